/** libbzip2-wasm ships no types: its default export makes an Emscripten module (thenable; see coders.ts). */
declare module 'libbzip2-wasm' {
  const load: () => unknown;
  export default load;
}
