/** The round cannot complete (too few survivors or shares); no partial result is released. */
export class SecAggAbort extends Error {}
