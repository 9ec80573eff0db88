/** The seeded simulation of the jobs core (a test harness; production code does not import it). */
export { defaultJobsSimOptions, runJobsCampaign, runJobsSeed, type JobsCampaignSummary, type JobsSimOptions, type JobsSimResult } from './simulation.ts';
