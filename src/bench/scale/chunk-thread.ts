/** Worker thread of ChunkSource: makes the chunks it is asked for (scale-workload.ts). */
import { parentPort } from 'node:worker_threads';
import { scaleChunk, type ChunkRequest } from './scale-workload.js';

parentPort?.on('message', (r: ChunkRequest) => parentPort?.postMessage(scaleChunk(r.index, r.count, r.seed, r.startMs)));
