/**
 * Loads tfjs' wasm backend with the gradient kernels it needs to train our models (wasm-train-kernels.ts).
 * Import this, not @tensorflow/tfjs-backend-wasm, wherever the wasm backend may train.
 */
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmTrainingKernels } from './wasm-train-kernels.ts';

registerWasmTrainingKernels();
