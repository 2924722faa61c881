// For test/t/027_node_package.pl: the package.json and package-lock.json
// of a clean application that depends on the client's npm pack tarball,
// with exactly the versions clients/node's lockfile pins, so that `npm ci
// --offline` finds every package in the cache the client's own npm ci
// filled. An offline `npm install <tarball>` would not: it resolves
// version ranges from the registry's package documents, which npm ci
// with a lockfile never fetches.
// Arguments: the client's lockfile, the tarball (relative to the app), the app's folder.
import { readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
const [lockPath, tarball, appDir] = process.argv.slice(2);
const lock = JSON.parse(readFileSync(lockPath, 'utf8'));
const client = lock.packages[''];
const integrity = 'sha512-' + createHash('sha512').update(readFileSync(`${appDir}/${tarball}`)).digest('base64');
const version = (name) => lock.packages[`node_modules/${name}`].version;
const deps = { 'orders-repository': `file:${tarball}`, typescript: version('typescript'), '@types/node': version('@types/node') };
const packages = { '': { name: 'app', dependencies: deps },
  'node_modules/orders-repository': { version: client.version, resolved: `file:${tarball}`, integrity,
                                      dependencies: client.dependencies } };
for (const [k, v] of Object.entries(lock.packages)) if (k !== '') { const { dev, ...rest } = v; packages[k] = rest; }
writeFileSync(`${appDir}/package.json`, JSON.stringify({ name: 'app', private: true, type: 'module', dependencies: deps }, null, 2));
writeFileSync(`${appDir}/package-lock.json`, JSON.stringify({ name: 'app', lockfileVersion: 3, requires: true, packages }, null, 2));
