/**
 * Registers the browser backends (webgpu, wasm with its training kernels; webgl and cpu come with
 * @tensorflow/tfjs) and points the wasm backend at the .wasm files Vite emitted, so it works from any
 * page that loads our bundle. tfjs picks the build itself: the multi-threaded SIMD one where threads can
 * share memory (a cross-origin isolated page: COOP + COEP headers, e.g. our demo; an embedding site opts
 * in with its own headers), else the single-threaded SIMD (or plain) one. Our training kernels are
 * registered by backend name, so both builds run them.
 */
import '@tensorflow/tfjs-backend-webgpu';
import { setThreadsCount, setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import './wasm-backend.ts';
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreaded from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';

const abs = (u: string): string => new URL(u, import.meta.url).toString();

// Multi-threaded build only: one thread per core (tfjs' default is half the cores, 1 on a 2-core machine).
setThreadsCount(Math.min(8, Math.max(1, globalThis.navigator?.hardwareConcurrency ?? 1)));

setWasmPaths({
  'tfjs-backend-wasm.wasm': abs(wasmPlain),
  'tfjs-backend-wasm-simd.wasm': abs(wasmSimd),
  'tfjs-backend-wasm-threaded-simd.wasm': abs(wasmThreaded),
});
