import { StrictMode, useEffect, useState, type ReactNode } from 'react';
import { createRoot } from 'react-dom/client';
import { Button } from 'react-aria-components';
import { Link, Redirect, Route, Switch, useLocation } from 'wouter';
import { request } from './api';
import { useQuery } from './components';
import { graphql } from './graphql';
import { Balances } from './pages/Balances';
import { CampaignPage, Campaigns } from './pages/Campaigns';
import { Convert } from './pages/Convert';
import { Invest } from './pages/Invest';
import { Issuer } from './pages/Issuer';
import { Market } from './pages/Market';
import { Markets } from './pages/Markets';
import { MyDonations } from './pages/MyDonations';
import { Organise } from './pages/Organise';
import { Perpetuals } from './pages/Perpetuals';
import { Approvals, Audit, Dashboard, MarketsAdmin, Users } from './pages/Operator';
import { DonationsAdmin } from './pages/OperatorDonations';
import { Security } from './pages/Security';
import { SignIn } from './pages/SignIn';
import { Withdrawals } from './pages/Withdrawals';
import { SessionProvider, useSession } from './session';
import './styles.css';

const AmIssuerQuery = graphql(`
  query AmIssuer {
    amIssuer
  }
`);

/// The issuer's pages, for issuers only.
function IssuerLink() {
  const { data } = useQuery(AmIssuerQuery);
  return data?.amIssuer ? <Link href="/issue">Issue</Link> : null;
}

const MyOrganiserQuery = graphql(`
  query MyOrganiser {
    myOrganiser { user }
  }
`);

/// The organiser's dashboard, for verified organisers only.
function OrganiseLink() {
  const { data } = useQuery(MyOrganiserQuery);
  return data?.myOrganiser ? <Link href="/organise">Organise</Link> : null;
}

const LogoutMutation = graphql(`
  mutation Logout {
    logout
  }
`);

type Theme = 'light' | 'dark';

/// The theme the user chose here, else the system's. Only this is kept in
/// browser storage: nothing about the session is.
function useTheme(): [Theme, () => void] {
  const [theme, setTheme] = useState<Theme>(() => {
    const chosen = localStorage.getItem('marionette.theme');
    if (chosen === 'light' || chosen === 'dark') return chosen;
    return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  });
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);
  return [
    theme,
    () =>
      setTheme((current) => {
        const next = current === 'dark' ? 'light' : 'dark';
        localStorage.setItem('marionette.theme', next);
        return next;
      }),
  ];
}

function Header() {
  const { me, refresh } = useSession();
  const [theme, toggleTheme] = useTheme();
  const [, navigate] = useLocation();
  async function signOut() {
    await request(LogoutMutation).catch(() => {});
    await refresh();
    navigate('/signin');
  }
  return (
    <header className="site">
      <a href="#content" className="skip">
        Skip to content
      </a>
      <Link href="/" className="brand">
        Marionette
      </Link>
      <nav aria-label="Main">
        <Link href="/">Markets</Link>
        <Link href="/perpetuals">Perpetuals</Link>
        <Link href="/campaigns">Campaigns</Link>
        {me ? (
          <>
            <Link href="/wallet">Wallet</Link>
            <Link href="/convert">Convert</Link>
            <Link href="/invest">Invest</Link>
            <IssuerLink key={me.id} />
            <Link href="/donations">Donations</Link>
            <OrganiseLink key={`organise-${me.id}`} />
            <Link href="/withdrawals">Withdrawals</Link>
            <Link href="/security">Security</Link>
          </>
        ) : null}
        {me?.role === 'OPERATOR' ? <Link href="/operator">Operators</Link> : null}
      </nav>
      <div className="account">
        <Button onPress={toggleTheme} aria-label={`Switch to the ${theme === 'dark' ? 'light' : 'dark'} theme`}>
          {theme === 'dark' ? 'Light' : 'Dark'}
        </Button>
        {me ? (
          <>
            <span className="who" data-testid="signed-in-as">
              {me.email}
            </span>
            <Button onPress={signOut}>Sign out</Button>
          </>
        ) : (
          <Link href="/signin">Sign in</Link>
        )}
      </div>
    </header>
  );
}

function SignedIn({ children }: { children: ReactNode }) {
  const { me, loading } = useSession();
  if (loading) return null;
  return me ? <>{children}</> : <Redirect to="/signin" />;
}

/// The pages that need a session, by path.
const SIGNED_IN_PAGES: [string, () => ReactNode][] = [
  ['/wallet', Balances],
  ['/convert', Convert],
  ['/invest', Invest],
  ['/issue', Issuer],
  ['/withdrawals', Withdrawals],
  ['/donations', MyDonations],
  ['/organise', Organise],
  ['/security', Security],
  ['/operator', Dashboard],
  ['/operator/approvals', Approvals],
  ['/operator/users', Users],
  ['/operator/markets', MarketsAdmin],
  ['/operator/donations', DonationsAdmin],
  ['/operator/audit', Audit],
];

function App() {
  return (
    <SessionProvider>
      <Header />
      <div id="content">
        {/* Pages live beside the API's paths, never on them: /graphql and /markets/... are the gateway's. */}
        <Switch>
          <Route path="/">
            <Markets />
          </Route>
          <Route path="/perpetuals">
            <Perpetuals />
          </Route>
          <Route path="/signin">
            <SignIn signUp={false} />
          </Route>
          <Route path="/signup">
            <SignIn signUp />
          </Route>
          <Route path="/campaigns">
            <Campaigns />
          </Route>
          <Route path="/campaigns/:id">{(params) => <CampaignPage id={decodeURIComponent(params.id)} />}</Route>
          <Route path="/trade/:market">{(params) => <Market id={decodeURIComponent(params.market)} />}</Route>
          {SIGNED_IN_PAGES.map(([path, Page]) => (
            <Route key={path} path={path}>
              <SignedIn>
                <Page />
              </SignedIn>
            </Route>
          ))}
          <Route>
            <main>
              <h1>Not found</h1>
              <p>
                <Link href="/">See the markets</Link>
              </p>
            </main>
          </Route>
        </Switch>
      </div>
      <footer className="site">
        <p>
          Charts by <a href="https://www.tradingview.com/">TradingView</a> lightweight-charts (Apache-2.0).
        </p>
      </footer>
    </SessionProvider>
  );
}

const root = document.getElementById('root');
if (root) {
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
}
