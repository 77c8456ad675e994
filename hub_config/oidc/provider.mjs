// kubelab's local OpenID Connect provider, for `make demo` and the browser tests.
//
// It is the certified `oidc-provider` package with three local choices:
//   * users, passwords and groups come from a YAML file (demo accounts only);
//   * the dev login screen is replaced by a small password form, and consent is skipped
//     because the hub is the only (first-party) client;
//   * it listens on loopback only and its pages load nothing from the network.
//
// Usage:
//   node provider.mjs --users users.yaml --port 9000 \
//        --client-id kubelab-hub --client-secret-file secret.txt \
//        --redirect-uri http://127.0.0.1:8000/hub/oauth_callback \
//        [--post-logout-redirect-uri http://127.0.0.1:8000/hub/login] [--host 127.0.0.1]
//
// Logs are one line per request: method, path (never the query string, which carries codes
// and state; opaque ids in the path are redacted) and status. The client secret and tokens are never logged.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

// The packages live in a cache folder keyed by the lock file (install.sh prints it), so that
// a checkout holds no node_modules; KUBELAB_OIDC_NODE_PREFIX points at it. Without it, Node's
// usual lookup next to this file applies.
async function importPackage(name) {
  const prefix = process.env.KUBELAB_OIDC_NODE_PREFIX;
  if (!prefix) return import(name);
  const resolved = createRequire(join(prefix, 'package.json')).resolve(name);
  return import(pathToFileURL(resolved).href);
}

const { Provider } = await importPackage('oidc-provider');
const { default: YAML } = await importPackage('yaml');

const { values: args } = parseArgs({
  options: {
    users: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '9000' },
    'client-id': { type: 'string', default: 'kubelab-hub' },
    'client-secret-file': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    'post-logout-redirect-uri': { type: 'string', multiple: true, default: [] },
  },
});

function fail(message) {
  console.error(`oidc-provider: error: ${message}`);
  process.exit(2);
}

if (!['127.0.0.1', 'localhost', '::1'].includes(args.host)) {
  // A demo provider with plain-text passwords must never be reachable from elsewhere.
  fail(`--host must be a loopback address, got ${args.host}`);
}
if (!args.users) fail('--users FILE is required');
if (!args['client-secret-file']) fail('--client-secret-file FILE is required');
if (!args['redirect-uri']?.length) fail('at least one --redirect-uri is required');

const clientSecret = readFileSync(args['client-secret-file'], 'utf8').trim();
if (!clientSecret) fail(`${args['client-secret-file']} is empty`);

// users.yaml: {users: {alice: {password, name, email, groups: [...]}}}
const usersDoc = YAML.parse(readFileSync(args.users, 'utf8'));
const users = usersDoc?.users;
if (!users || typeof users !== 'object') fail(`${args.users}: top-level key 'users' (a mapping) is required`);

const issuer = `http://${args.host === '::1' ? '[::1]' : args.host}:${args.port}`;

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

// Plain pages without web fonts: the demo and tests must never dial beyond loopback.
function page(title, body) {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}main{max-width:22rem;margin:4rem auto;background:#fff;
padding:2rem;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.15)}h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem}
input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}button{margin-top:1.2rem;width:100%;padding:.6rem;font-size:1rem;
background:#2f5d8a;color:#fff;border:0;border-radius:4px;cursor:pointer}.error{color:#a4262c}</style></head>
<body><main>${body}</main></body></html>`;
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256', kid: randomBytes(8).toString('hex') };

const configuration = {
  clients: [{
    client_id: args['client-id'],
    client_secret: clientSecret,
    client_name: 'kubelab',
    redirect_uris: args['redirect-uri'],
    post_logout_redirect_uris: args['post-logout-redirect-uri'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  // Fresh keys per start: sessions live in memory, so nothing outlives the process anyway.
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email'],
    groups: ['groups'],
  },
  // Put the scopes' claims in the id_token too, not only in userinfo.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      // Sign out without a confirmation page: the hub's logout already was the user's choice.
      logoutSource: async (ctx, form) => {
        const autoForm = form.replace('</form>', '<input type="hidden" name="logout" value="yes"></form>');
        ctx.body = page('Signing out', `<h1>Signing out…</h1>${autoForm}
<noscript><button type="submit" form="op.logoutForm">Sign out</button></noscript>
<script>document.getElementById('op.logoutForm').submit()</script>`);
      },
      postLogoutSuccessSource: async (ctx) => {
        ctx.body = page('Signed out', '<h1>Signed out</h1><p>You have been signed out.</p>');
      },
    },
  },
  // Skip consent: the hub is a first-party client, so grant what it asked for at login.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile email groups');
    await grant.save();
    return grant;
  },
  findAccount: async (ctx, id) => {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      claims: async () => ({
        sub: id,
        preferred_username: id,
        name: user.name || id,
        email: user.email || `${id}@example.org`,
        groups: Array.isArray(user.groups) ? user.groups : [],
      }),
    };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = page('Error', `<h1>Sign-in error</h1><p class="error">${escapeHtml(out.error)}: ${escapeHtml(out.error_description || '')}</p>`);
  },
  ttl: { AccessToken: 3600, IdToken: 3600, Session: 8 * 3600, Interaction: 600, Grant: 8 * 3600 },
};

const provider = new Provider(issuer, configuration);
// Errors are logged by name only: their details can quote request parameters.
provider.on('server_error', (ctx, err) => console.error(`oidc-provider: server_error ${err.name}`));

function passwordMatches(expected, given) {
  const a = Buffer.from(String(expected ?? ''));
  const b = Buffer.from(String(given ?? ''));
  return a.length === b.length && timingSafeEqual(a, b);
}

function loginForm(uid, { username = '', error = '' } = {}) {
  return page('Sign in', `<h1>Sign in</h1>${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label for="username">Username</label><input id="username" name="username" value="${escapeHtml(username)}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" required>
<button type="submit">Sign in</button></form>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 16384) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

// The replacement for the dev login screen: check the password, then finish the interaction.
async function handleInteraction(req, res, path) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt } = details;
  if (req.method === 'GET' && path === `/interaction/${uid}`) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    return res.end(loginForm(uid));
  }
  if (req.method === 'POST' && path === `/interaction/${uid}/login` && prompt.name === 'login') {
    const form = await readForm(req);
    const username = form.get('username') || '';
    const user = Object.hasOwn(users, username) ? users[username] : undefined;
    if (!user || !passwordMatches(user.password, form.get('password'))) {
      res.writeHead(401, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      return res.end(loginForm(uid, { username, error: 'Invalid username or password.' }));
    }
    return provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
  }
  res.writeHead(400, { 'content-type': 'text/plain' });
  return res.end('unexpected interaction request');
}

const handleProvider = provider.callback();

// Interaction and session ids travel in paths (/interaction/<uid>) and equal cookie values,
// so long opaque path segments are logged as [id].
function redactPath(path) {
  return path.replace(/[A-Za-z0-9_-]{16,}/g, '[id]');
}

const server = createServer(async (req, res) => {
  const path = new URL(req.url, issuer).pathname;
  res.on('finish', () => console.log(`oidc-provider: ${req.method} ${redactPath(path)} ${res.statusCode}`));
  if (path.startsWith('/interaction/')) {
    try {
      await handleInteraction(req, res, path);
    } catch (err) {
      // An expired or unknown interaction: say so, without echoing request data.
      console.error(`oidc-provider: interaction failed: ${err.name}`);
      if (!res.headersSent) {
        res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
        res.end(page('Sign-in expired', '<h1>Sign-in expired</h1><p>Go back to the hub and sign in again.</p>'));
      }
    }
    return;
  }
  handleProvider(req, res);
});

server.listen(Number(args.port), args.host, () => {
  console.log(`oidc-provider: issuer ${issuer} ready (${Object.keys(users).length} users)`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    // Keep-alive connections from the hub or the browser would hold close() open.
    server.closeAllConnections();
  });
}
