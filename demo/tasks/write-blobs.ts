/**
 * Writes demo/tasks/blobs.task.json and blobs.eval.json from blobs.ts:
 *   npx tsx demo/tasks/write-blobs.ts && npx prettier --write demo/tasks/*.json
 */
import { writeFileSync } from 'node:fs';
import { blobsEval, blobsTask } from './blobs.ts';

const here = new URL('.', import.meta.url).pathname;
writeFileSync(`${here}blobs.task.json`, JSON.stringify(blobsTask()) + '\n');
writeFileSync(`${here}blobs.eval.json`, JSON.stringify(blobsEval()) + '\n');
