/**
 * A whole save of a domain into a stream: plain (pause, send every page,
 * END) or checkpointed (live pass over all pages, then N epochs of
 * suspend / send dirty / checkpoint / resume, then END). The guest is
 * resumed in a finally, whatever the sink does.
 */
import type { Domain } from '../domain/types.js';
import { StreamSaver, type ChunkSink, type SaverOptions } from './saver.js';

export interface SaveOptions extends SaverOptions {
  /** 0: a plain save. N > 0: a checkpointed stream of exactly N epochs. */
  checkpoints: number;
}

export interface EpochSummary {
  epoch: number;
  pages: number;
  bytes: number;
}

export interface SaveSummary {
  bytes: number;
  epochs: EpochSummary[];
}

export function saveDomain(domain: Domain, options: SaveOptions, sink: ChunkSink, runGuest: () => void): SaveSummary {
  const saver = new StreamSaver(domain, options, sink);
  const all = Array.from({ length: domain.info.pages }, (_, pfn) => pfn);
  const epochs: EpochSummary[] = [];

  if (options.checkpoints === 0) {
    domain.pause();
    try {
      saver.start();
      const sent = saver.sendPages(all);
      saver.endOfCheckpoint();
      saver.end();
      epochs.push({ epoch: 0, ...sent });
    } finally {
      domain.unpause();
    }
    return { bytes: saver.position, epochs };
  }

  saver.start();
  domain.enableLogDirty();
  let carried = saver.sendPages(all); // live pass: the guest keeps running
  for (let epoch = 1; epoch <= options.checkpoints; epoch++) {
    runGuest();
    const start = saver.position - carried.bytes;
    domain.pause();
    try {
      const dirty = domain.readAndClearDirty();
      const sent = saver.sendPages(dirty);
      saver.endOfCheckpoint();
      saver.checkpoint();
      epochs.push({ epoch, pages: carried.pages + sent.pages, bytes: saver.position - start });
    } finally {
      domain.unpause();
    }
    carried = { pages: 0, bytes: 0 };
  }
  saver.end();
  return { bytes: saver.position, epochs };
}
