#!/usr/bin/env node
/**
 * The `dcas` command, for `node node/cli/dcas.ts`; launchers use dcas.mjs, which starts faster (see
 * there). Both turn on Node's compile cache and run the program (program.ts).
 */
import { enableCompileCache } from 'node:module';

enableCompileCache();
await import('./program.ts');
