/**
 * Registers the browser backends (webgpu, wasm with its training kernels; webgl and cpu come with
 * @tensorflow/tfjs) and points the wasm backend at the .wasm files Vite emitted, so it works from any
 * page that loads our bundle.
 */
import { env } from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import './wasm-backend.ts';
import wasmPlain from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm?url';
import wasmSimd from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm?url';
import wasmThreaded from '@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm?url';

const abs = (u: string): string => new URL(u, import.meta.url).toString();

// The single-threaded SIMD build, also on cross-origin isolated pages (our demo page is one: COOP + COEP).
// There tfjs would pick the threaded build, whose pthread workers re-create the Emscripten factory from
// its source text (factory.toString()); in our bundle that text refers to names of the bundle's own scope
// and the workers die with "e is not defined".
env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);

setWasmPaths({
  'tfjs-backend-wasm.wasm': abs(wasmPlain),
  'tfjs-backend-wasm-simd.wasm': abs(wasmSimd),
  'tfjs-backend-wasm-threaded-simd.wasm': abs(wasmThreaded),
});
