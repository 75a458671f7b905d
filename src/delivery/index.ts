// Delivery: who gets a message. So far the ephemeral fan-out index of one router; durable
// subscriptions, acks and redelivery join here later.
export { type SubscriptionEntry, SubscriptionTable } from "./subscription-table.ts";
