export { createGateway, type Gateway, type GatewayOptions, type GatewayRoutes } from './http.ts';
export { defaultGatewayLimits, type GatewayLimits } from './ws.ts';
export type { GatewayStats, RaftStatus } from './metrics.ts';
export { defaultImageLimits, imageErrorStatus, type ImageLimits } from './images-route.ts';
