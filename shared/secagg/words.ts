/**
 * Bulk vector addition mod 2^32 for masks and masked sums: WebAssembly SIMD (i32x4.add / i32x4.sub, four
 * words per instruction) where the platform runs it, a plain Int32Array loop where it does not (no
 * WebAssembly, SIMD off, or a page whose Content-Security-Policy forbids compiling wasm). Both give the
 * same words: int32 wrap-around is addition mod 2^32.
 *
 * The module is written out below as opcodes, not shipped as an opaque blob. In text form:
 *   (module
 *     (memory (export "mem") 1)
 *     (func (export "add") (param $dst i32) (param $src i32) (param $bytes i32) (local $end i32)
 *       (local.set $end (i32.add (local.get $dst) (local.get $bytes)))
 *       (block (loop
 *         (br_if 1 (i32.ge_u (local.get $dst) (local.get $end)))
 *         (v128.store (local.get $dst) (i32x4.add (v128.load (local.get $dst)) (v128.load (local.get $src))))
 *         (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
 *         (local.set $src (i32.add (local.get $src) (i32.const 16)))
 *         (br 0))))
 *     (func (export "sub") ... the same with i32x4.sub))
 * `bytes` is a multiple of 16; the last 0-3 words of a vector are added in JavaScript.
 */

const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (s: string): number[] => [s.length, ...Array.from(s, (c) => c.charCodeAt(0))];

const I32 = 0x7f;
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const I32_CONST = 0x41;
const I32_ADD = 0x6a;
const I32_GE_U = 0x4f;
const BLOCK = 0x02;
const LOOP = 0x03;
const VOID = 0x40;
const BR = 0x0c;
const BR_IF = 0x0d;
const END = 0x0b;
const SIMD = 0xfd;
const V128_LOAD = [SIMD, 0x00, 0x00, 0x00]; // memarg: align 2^0, offset 0
const V128_STORE = [SIMD, 0x0b, 0x00, 0x00];
const I32X4_ADD = [SIMD, ...uleb(174)];
const I32X4_SUB = [SIMD, ...uleb(177)];

function body(op: number[]): number[] {
  const code = [
    ...[1, 1, I32], // one local: $end
    ...[LOCAL_GET, 0, LOCAL_GET, 2, I32_ADD, LOCAL_SET, 3],
    ...[BLOCK, VOID, LOOP, VOID],
    ...[LOCAL_GET, 0, LOCAL_GET, 3, I32_GE_U, BR_IF, 1],
    ...[LOCAL_GET, 0, LOCAL_GET, 0, ...V128_LOAD, LOCAL_GET, 1, ...V128_LOAD, ...op, ...V128_STORE],
    ...[LOCAL_GET, 0, I32_CONST, 16, I32_ADD, LOCAL_SET, 0],
    ...[LOCAL_GET, 1, I32_CONST, 16, I32_ADD, LOCAL_SET, 1],
    ...[BR, 0, END, END, END],
  ];
  return [...uleb(code.length), ...code];
}

/** The module's bytes (exported for the test that validates them). */
export const WORDS_WASM = Uint8Array.from([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
  ...section(1, [1, 0x60, 3, I32, I32, I32, 0]), // type 0: (i32, i32, i32) -> ()
  ...section(3, [2, 0, 0]), // two functions of type 0
  ...section(5, [1, 0x00, 1]), // one memory, at least 1 page
  ...section(7, [3, ...name('mem'), 2, 0, ...name('add'), 0, 0, ...name('sub'), 0, 1]),
  ...section(10, [2, ...body(I32X4_ADD), ...body(I32X4_SUB)]),
]);

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}

interface Kernels {
  mem: { buffer: ArrayBuffer; grow(pages: number): number };
  add(dst: number, src: number, bytes: number): void;
  sub(dst: number, src: number, bytes: number): void;
}

let compiled: object | null | undefined;
let jsOnly = false;

function wasmModule(): object | null {
  if (compiled !== undefined) return compiled;
  const wa = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  try {
    compiled = wa ? new wa.Module(WORDS_WASM) : null;
  } catch {
    compiled = null; // no SIMD, or wasm compilation refused (CSP)
  }
  return compiled;
}

/** Which adder a new WordSum uses here. */
export function wordsBackend(): 'wasm-simd' | 'js' {
  return !jsOnly && wasmModule() ? 'wasm-simd' : 'js';
}

/** Forces the JavaScript loop (true) or allows wasm again: for tests and benchmarks. */
export function useJsWords(on: boolean): void {
  jsOnly = on;
}

/**
 * acc[off + i] += sign * v[i] (mod 2^32), one tight loop over int32 views (int32 wrap-around is addition
 * mod 2^32): the fallback of WordSum, and what small or one-off sums use directly.
 */
export function addWords(acc: Int32Array, off: number, v: Int32Array, sign: 1 | -1 = 1): void {
  const n = v.length;
  if (sign === 1) for (let i = 0; i < n; i++) acc[off + i] = (acc[off + i] + v[i]) | 0;
  else for (let i = 0; i < n; i++) acc[off + i] = (acc[off + i] - v[i]) | 0;
}

const PAGE = 65536;
const MAX_WASM_BYTES = 2 ** 31; // wasm32 memory; larger vectors take the JavaScript loop

/**
 * A vector of `length` words that other vectors are added into (or subtracted from), mod 2^32. With
 * wasm the words live in the instance's memory, so each add copies its operand in once (memcpy speed)
 * and adds four words per instruction; read the result with copyTo.
 */
export class WordSum {
  readonly length: number;
  private readonly k: Kernels | null;
  private readonly words: Int32Array;
  /** Byte offset of the scratch area operands are copied to (wasm only). */
  private readonly scratch: number;
  private readonly scratchWords: number;

  /** `init`, when given, is the starting value (copied); otherwise all zeros. */
  constructor(length: number, init?: Uint32Array | Int32Array, maxOperandWords = 1 << 18) {
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`bad vector length ${length}`);
    if (init && init.length !== length) throw new RangeError(`init has ${init.length} words, not ${length}`);
    this.length = length;
    const module = jsOnly ? null : wasmModule();
    this.scratchWords = Math.max(4, Math.min(maxOperandWords, length));
    this.scratch = Math.ceil((length * 4) / 16) * 16;
    const bytes = this.scratch + this.scratchWords * 4;
    let k: Kernels | null = null;
    if (module && bytes <= MAX_WASM_BYTES) {
      try {
        const wa = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
        k = new wa.Instance(module).exports as unknown as Kernels;
        const pages = Math.ceil(bytes / PAGE) - k.mem.buffer.byteLength / PAGE;
        if (pages > 0) k.mem.grow(pages);
      } catch {
        k = null; // wasm memory refused (a memory-tight tab): the JavaScript loop needs none
      }
    }
    this.k = k;
    this.words = k ? new Int32Array(k.mem.buffer, 0, length) : new Int32Array(length);
    if (init) this.words.set(new Int32Array(init.buffer, init.byteOffset, length));
  }

  /** words[off + i] += sign * v[i] (mod 2^32) for every i of v. */
  add(v: Uint32Array | Int32Array, sign: 1 | -1 = 1, off = 0): void {
    if (sign !== 1 && sign !== -1) throw new RangeError(`sign must be 1 or -1, got ${String(sign)}`);
    const n = v.length;
    if (!Number.isInteger(off) || off < 0 || off + n > this.length)
      throw new RangeError(`operand of ${n} words at ${off} does not fit ${this.length}`);
    const src = new Int32Array(v.buffer, v.byteOffset, n);
    const k = this.k;
    if (!k) return addWords(this.words, off, src, sign);
    const scratch = new Int32Array(k.mem.buffer, this.scratch, this.scratchWords);
    for (let from = 0; from < n; from += this.scratchWords) {
      const m = Math.min(this.scratchWords, n - from);
      const bulk = m & ~3;
      scratch.set(src.subarray(from, from + m));
      (sign === 1 ? k.add : k.sub)((off + from) * 4, this.scratch, bulk * 4);
      addWords(this.words, off + from + bulk, scratch.subarray(bulk, m), sign); // the last 0-3 words
    }
  }

  /** Copies the words out. */
  copyTo(target: Uint32Array | Int32Array): void {
    if (target.length !== this.length)
      throw new RangeError(`target has ${target.length} words, not ${this.length}`);
    new Int32Array(target.buffer, target.byteOffset, this.length).set(this.words);
  }
}
