/**
 * What the master and its generations tell an observer (the metrics, process/metrics.ts) as they
 * run. Kept to plain callbacks so master.ts and generation.ts stay free of metrics code.
 */
import type { ChildProcess } from 'node:child_process';
import type { Group } from '../../grm/index.js';

export interface GenerationHooks {
  /** A worker process was forked for `generation` (its first start, or a restart). */
  workerSpawned?(generation: number, proc: ChildProcess): void;
  /** The generation is about to free its BPF slot in each group (`gen`: that group's number for it). */
  releasing?(generation: number, slots: ReadonlyArray<{ readonly group: Group; readonly gen: number }>): void;
}

export interface MasterHooks extends GenerationHooks {
  /** A reload succeeded; `phases` in ms (validateMs, startAndFlipMs). */
  reloaded?(phases: Readonly<Record<string, number>>): void;
  /** A generation a reload replaced finished draining. */
  drained?(durationMs: number, timedOut: boolean): void;
}
