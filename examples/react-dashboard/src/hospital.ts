// The hospital the token acts in and its practitioners: reference data every page needs, asked
// once and kept by the cache (and the browser: the server marks it cacheable).
import { useQuery } from "@apollo/client/react";

import { HospitalDocument, type HospitalQuery } from "./__generated__/graphql";

export type Practitioner = HospitalQuery["practitioners"]["edges"][number]["node"];

export function useHospital() {
  const { data, error } = useQuery(HospitalDocument, { errorPolicy: "all" });
  return {
    hospital: data?.viewer.hospital ?? null,
    practitioners: (data?.practitioners.edges ?? []).map((edge) => edge.node),
    error,
  };
}
