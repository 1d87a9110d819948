// The console's only way to the gateway: its public GraphQL API over
// POST /graphql and its subscriptions over graphql-transport-ws, both
// same-origin, authenticated by the HttpOnly login cookie the gateway sets
// (the console never sees or stores a token).
import { print } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import type { TadaDocumentNode } from 'gql.tada';

/// An error the API answered, with its code (`extensions.code`) when it gave one.
export class ApiError extends Error {
  constructor(
    message: string,
    readonly code: string | null,
    private readonly advice?: string,
  ) {
    super(message);
  }

  /// What the user can do about it, for the codes a person can act on.
  get hint(): string | null {
    return this.advice ?? (this.code && HINTS[this.code]) ?? null;
  }
}

const HINTS: Record<string, string> = {
  UNAUTHENTICATED: 'Sign in again: your session has ended.',
  TWO_FACTOR_REQUIRED: 'Enter the code your authenticator app shows.',
  RATE_LIMITED: 'Too many attempts: wait a little and try again.',
  INSUFFICIENT_FUNDS: 'Deposit more, or cancel open orders to free what they hold.',
  MARKET_CLOSED: 'The operators have halted this market; orders are refused until it resumes.',
  PRICE_OUT_OF_BAND: 'The price is too far from the last trade for this market.',
  KILL_SWITCH_ENGAGED: 'Your trading is stopped by a kill switch; lift it in your account settings.',
  ACCOUNT_FROZEN: 'The operators have frozen this account.',
  NETWORK: 'The gateway did not answer: check the connection and try again.',
  APPROVAL_PENDING: 'Another operator approves it under Approvals (or makes the same request) to apply it.',
  TWO_FACTOR_ENROLMENT_REQUIRED: 'Operators must use two-factor authentication: set it up under Security first.',
  FORBIDDEN: 'This needs another role or a login rather than an API key.',
  ADDRESS_COOLING_DOWN: 'A new address can be withdrawn to once its cooldown has passed.',
  ADDRESS_NOT_IN_BOOK: 'Withdrawals go only to your address book: add the address and wait out its cooldown.',
  WEAK_PASSWORD: 'Choose a longer password, such as a few unrelated words.',
};

type Variables = Record<string, unknown>;

interface GraphQLResponse<T> {
  data?: T | null;
  errors?: { message: string; extensions?: { code?: string } }[];
}

export async function request<T, V extends Variables>(document: TadaDocumentNode<T, V>, variables?: V): Promise<T> {
  let response: Response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' },
      body: JSON.stringify({ query: print(document), variables: variables ?? {} }),
    });
  } catch {
    throw new ApiError('The gateway did not answer.', 'NETWORK');
  }
  let body: GraphQLResponse<T>;
  try {
    body = (await response.json()) as GraphQLResponse<T>;
  } catch {
    throw new ApiError(`The gateway answered ${response.status} ${response.statusText}.`, 'NETWORK');
  }
  const error = body.errors?.[0];
  if (error) {
    throw new ApiError(error.message, error.extensions?.code ?? null);
  }
  if (body.data == null) {
    throw new ApiError('The gateway answered without data.', null);
  }
  return body.data;
}

let client: Client | null = null;

const feedListeners = new Set<() => void>();

/// Calls `listener` whenever the live feed's socket closes: the client
/// reconnects on its own, without telling a subscription, so a page that
/// must not show frozen figures polls until its subscription speaks again.
export function onLiveFeedClosed(listener: () => void): () => void {
  feedListeners.add(listener);
  return () => {
    feedListeners.delete(listener);
  };
}

function wsClient(): Client {
  if (!client) {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    client = createClient({
      url: `${scheme}://${location.host}/graphql`,
      lazy: true,
      retryAttempts: Infinity,
      shouldRetry: () => true,
      on: { closed: () => feedListeners.forEach((listener) => listener()) },
    });
  }
  return client;
}

/// A live subscription: how to start it on the current client, and how
/// to stop what was started last.
interface Live {
  start: () => () => void;
  stop: () => void;
}

const live = new Set<Live>();

/// After sign-in or sign-out: a new socket, with the new cookie, carries
/// every live subscription on (a page's book must not go quiet because the
/// session changed under it).
export function resetSubscriptions(): void {
  const old = client;
  client = null;
  for (const entry of live) {
    entry.stop();
    entry.stop = entry.start();
  }
  old?.dispose();
}

/// Subscribes; `next` gets each result, `failed` each error, `ended` the
/// server's end of the stream (when it stops a feed). Returns the unsubscribe.
export function subscribe<T, V extends Variables>(
  document: TadaDocumentNode<T, V>,
  variables: V,
  next: (data: T) => void,
  failed: (error: ApiError) => void,
  ended?: () => void,
): () => void {
  const query = print(document);
  const entry: Live = {
    stop: () => {},
    start: () => {
      // Callbacks of a socket since replaced say nothing.
      let current = true;
      const unsubscribe = wsClient().subscribe<T>(
        { query, variables },
        {
          next: (result) => {
            if (!current) return;
            const error = result.errors?.[0];
            if (error) {
              failed(new ApiError(error.message, (error.extensions?.code as string | undefined) ?? null));
            } else if (result.data) {
              next(result.data);
            }
          },
          error: () => {
            if (current) failed(new ApiError('The live feed was interrupted; reconnecting.', 'NETWORK'));
          },
          complete: () => {
            if (current) ended?.();
          },
        },
      );
      return () => {
        current = false;
        unsubscribe();
      };
    },
  };
  entry.stop = entry.start();
  live.add(entry);
  return () => {
    live.delete(entry);
    entry.stop();
  };
}
