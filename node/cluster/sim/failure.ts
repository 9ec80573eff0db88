/** A simulated run found a broken rule: `safety` (Raft guarantees) or `liveness` (progress after heal). */
export class SimulationFailure extends Error {
  readonly kind: 'safety' | 'liveness';

  constructor(kind: 'safety' | 'liveness', message: string) {
    super(message);
    this.name = 'SimulationFailure';
    this.kind = kind;
  }
}
