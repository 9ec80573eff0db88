/** The deterministic simulation of the Raft core (a test harness; production code does not import it). */
export { runSeed, Simulation, defaultSimOptions, describeMessage } from './simulation.ts';
export type { Scenario, SimOptions, SimResult, SimStats } from './simulation.ts';
export { runCampaign } from './campaign.ts';
export type { CampaignSummary } from './campaign.ts';
export { SeededRandom } from './random.ts';
export { SimulationFailure } from './failure.ts';
export { SimStorage } from './storage.ts';
