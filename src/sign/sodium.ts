// The one initialised libsodium instance of modelhub. Importing this module waits for the
// WebAssembly build to be ready (top-level await), so every user can call it synchronously.
import sodium from 'libsodium-wrappers';

await sodium.ready;

export { sodium };
