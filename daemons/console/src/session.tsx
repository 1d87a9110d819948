// Who is signed in, as the gateway says (`me`): the cookie itself is
// HttpOnly, so the console asks rather than reads.
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from 'react';
import { ApiError, request, resetSubscriptions } from './api';
import { graphql, type ResultOf } from './graphql';

const MeQuery = graphql(`
  query Me {
    me { id email role twoFactorEnabled }
  }
`);

export type Me = ResultOf<typeof MeQuery>['me'];

interface Session {
  me: Me | null;
  loading: boolean;
  refresh: () => Promise<void>;
}

const SessionContext = createContext<Session>({ me: null, loading: true, refresh: async () => {} });

export function SessionProvider({ children }: { children: ReactNode }) {
  const [me, setMe] = useState<Me | null>(null);
  const [loading, setLoading] = useState(true);
  const refresh = useCallback(async () => {
    try {
      setMe((await request(MeQuery)).me);
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== 'NETWORK') setMe(null);
    } finally {
      setLoading(false);
      resetSubscriptions();
    }
  }, []);
  useEffect(() => {
    void refresh();
  }, [refresh]);
  return <SessionContext.Provider value={{ me, loading, refresh }}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  return useContext(SessionContext);
}
