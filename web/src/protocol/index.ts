// The protocol client, without React: frames and their MessagePack encoding, the HTTP
// API, reconnect backoff, the per-channel merge, typing throttles and the client itself.

export * from './api';
export * from './backoff';
export * from './channel';
export * from './client';
export * from './frames';
export * from './typing';
