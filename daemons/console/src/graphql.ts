// Typed GraphQL documents from the gateway's committed schema
// (daemons/gateway/schema.graphql): `npm run check` regenerates the types
// and fails on any field the schema does not have.
import { initGraphQLTada } from 'gql.tada';
import type { introspection } from './graphql-env.d.ts';

export const graphql = initGraphQLTada<{
  introspection: introspection;
  // Money and times travel as strings and stay strings: never a float.
  scalars: { Decimal: string; DateTime: string };
}>();

export type { FragmentOf, ResultOf, VariablesOf } from 'gql.tada';
