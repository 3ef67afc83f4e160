/// <reference lib="webworker" />
import { serveSecureEngine, type EngineCall } from './secure-engine.ts';

declare const self: DedicatedWorkerGlobalScope;

// DP encoding and secure aggregation, off the host page's main thread: calls run one at a time, in order.
const serve = serveSecureEngine((reply, transfer) => self.postMessage(reply, transfer));
self.onmessage = (e: MessageEvent<EngineCall>) => serve(e.data);
