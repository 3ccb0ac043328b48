// verify_jwt.js - check a JWT assertion that nscollect signed with Google's
// own library (google-auth-library) and the community's (jsonwebtoken).
//
//   node verify_jwt.js < request.json
//
// request: {"jwt", "key_file" (the service-account key as gcloud writes it),
//           "aud" (the token URI), "scope"}
// Prints one JSON line: {"ok": true, "header": ..., "claims": ...} or
// {"ok": false, "error": "..."}; exits 0 either way (the caller asserts).
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const jsonwebtoken = require('jsonwebtoken');
const {OAuth2Client, JWT} = require('google-auth-library');

async function verify(req) {
  const key = JSON.parse(fs.readFileSync(req.key_file, 'utf8'));
  // The key file is read by Google's library as gcloud wrote it.
  const client = new JWT();
  client.fromJSON(key);
  if (client.email !== key.client_email || client.keyId !== key.private_key_id)
    throw new Error('google-auth-library did not read the key file');
  const pub = crypto.createPublicKey(key.private_key).export({type: 'spki', format: 'pem'});

  // Google's verifier: signature by the kid's key, iat/exp sane, aud, iss.
  const ticket = await new OAuth2Client().verifySignedJwtWithCertsAsync(
      req.jwt, {[key.private_key_id]: pub}, req.aud, [key.client_email], 3600 + 300);
  const claims = ticket.getPayload();
  const header = ticket.getEnvelope();

  // The community's verifier, with its own strict options.
  const again = jsonwebtoken.verify(req.jwt, pub, {
    algorithms: ['RS256'], audience: req.aud, issuer: key.client_email,
    complete: true, maxAge: '1h', clockTolerance: 60});

  const problems = [];
  if (header.alg !== 'RS256' || header.typ !== 'JWT' || header.kid !== key.private_key_id)
    problems.push('header ' + JSON.stringify(header));
  if (claims.scope !== req.scope) problems.push('scope ' + claims.scope);
  if (claims.exp - claims.iat !== 3600) problems.push('lifetime ' + (claims.exp - claims.iat));
  if (Math.abs(claims.iat - Date.now() / 1000) > 600) problems.push('iat ' + claims.iat);
  const extra = Object.keys(claims).filter(k => !['iss', 'scope', 'aud', 'iat', 'exp'].includes(k));
  if (extra.length) problems.push('unexpected claims ' + extra.join(','));
  if (JSON.stringify(again.payload) !== JSON.stringify(claims)) problems.push('verifiers disagree');
  if (problems.length) throw new Error(problems.join('; '));
  return {header, claims};
}

let input = '';
process.stdin.on('data', d => { input += d; });
process.stdin.on('end', () => {
  verify(JSON.parse(input))
      .then(r => console.log(JSON.stringify({ok: true, header: r.header, claims: r.claims})))
      .catch(e => console.log(JSON.stringify({ok: false, error: String(e && e.message || e)})));
});
