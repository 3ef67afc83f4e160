import type { BackendName } from '../shared/protocol/messages.ts';
import { isSoftwareRenderer, type BackendPrecheck } from './backends.ts';

/** What the browser says about the device behind WebGPU or WebGL (empty when it will not say). */
export async function gpuDescription(backend: 'webgpu' | 'webgl'): Promise<string> {
  if (backend === 'webgpu') {
    const adapter = await (navigator as Navigator & { gpu?: GPU }).gpu?.requestAdapter();
    if (!adapter) return '';
    // adapter.info (Chrome 114+, Firefox 141+) is newer than TypeScript's DOM typings.
    const info = (
      adapter as GPUAdapter & {
        info?: GPUAdapterInfo & { description?: string; isFallbackAdapter?: boolean };
      }
    ).info;
    if (!info) return '';
    return [
      info.vendor,
      info.architecture,
      info.device,
      info.description,
      info.isFallbackAdapter ? 'software fallback adapter' : '',
    ].join(' ');
  }
  const canvas =
    typeof OffscreenCanvas !== 'undefined' ? new OffscreenCanvas(1, 1) : document.createElement('canvas');
  const gl = (canvas.getContext('webgl2') ?? canvas.getContext('webgl')) as WebGLRenderingContext | null;
  if (!gl) return '';
  const ext = gl.getExtension('WEBGL_debug_renderer_info');
  const text = ext
    ? `${gl.getParameter(ext.UNMASKED_VENDOR_WEBGL)} ${gl.getParameter(ext.UNMASKED_RENDERER_WEBGL)}`
    : `${gl.getParameter(gl.RENDERER)}`;
  gl.getExtension('WEBGL_lose_context')?.loseContext();
  return text;
}

/**
 * For the default order only: pass over WebGPU/WebGL when their device is a CPU emulation and wasm is still
 * to come (on the CI machine SwiftShader WebGPU trains 17 ex/s, WebGL 51, wasm 565). An explicit
 * backend list from the page is honoured as given.
 */
export function softwareGpuPrecheck(order: readonly BackendName[]): BackendPrecheck {
  return async (backend) => {
    if ((backend !== 'webgpu' && backend !== 'webgl') || order.indexOf('wasm') < order.indexOf(backend))
      return null;
    const desc = await gpuDescription(backend);
    return isSoftwareRenderer(desc)
      ? `software GPU (${desc.replace(/\s+/g, ' ').trim()}): wasm is faster on this CPU`
      : null;
  };
}
