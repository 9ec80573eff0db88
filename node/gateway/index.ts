export { createGateway, type Gateway, type GatewayOptions, type GatewayRoutes } from './http.ts';
