// Today: the reference signer and validator, the private key in a file the service reads.
const { readFileSync } = require('node:fs');
const { Jws } = require('@mojaloop/sdk-standard-components');

const signer = new Jws.signer({ logger, signingKey: readFileSync('/secrets/jws-signing-key.pem', 'utf8') });
const validator = new Jws.validator({ logger, validationKeys: { payeefsp: readFileSync('/keys/payeefsp.pem', 'utf8') } });

function send(reqOpts) {
  signer.sign(reqOpts); // sets fspiop-http-method, fspiop-uri, fspiop-signature; the body becomes canonical text
  return request(reqOpts);
}

function onIncoming(ctx) {
  validator.validate(ctx.request); // throws with the reason
}
