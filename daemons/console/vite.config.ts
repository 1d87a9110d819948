import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The gateway serves dist/ under a Content-Security-Policy with no inline
// script: Vite's module-preload polyfill would be one, so it is off (every
// browser the console supports preloads modules itself).
export default defineConfig({
  plugins: [react()],
  build: {
    target: 'es2022',
    modulePreload: { polyfill: false },
    rollupOptions: {
      output: {
        // The chart and React change less often than the app: their own
        // hashed files stay cached across releases.
        manualChunks: { react: ['react', 'react-dom', 'react-aria-components'], chart: ['lightweight-charts'] },
      },
    },
  },
  server: {
    proxy: { '/graphql': { target: 'http://127.0.0.1:8080', ws: true } },
  },
});
