// Who is signed in, as the gateway says (`me`): the cookie itself is
// HttpOnly, so the console asks rather than reads.
import { createContext, useCallback, useContext, useEffect, useRef, useState, type ReactNode } from 'react';
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
  // Who the live subscriptions' socket was opened for; undefined before the first answer.
  const known = useRef<string | null | undefined>(undefined);
  const refresh = useCallback(async () => {
    let who: string | null = known.current ?? null;
    try {
      const answer = (await request(MeQuery)).me;
      setMe(answer);
      who = answer.id;
    } catch (error) {
      if (!(error instanceof ApiError) || error.code !== 'NETWORK') {
        setMe(null);
        who = null;
      }
    } finally {
      setLoading(false);
      // A socket opened before the first answer had the same cookie: only a change of who needs a new one.
      if (known.current !== undefined && known.current !== who) resetSubscriptions();
      known.current = who;
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
