// Validate custom resources against the schemas their operators publish, offline.
// Reads a YAML stream on stdin; prints one JSON line per custom resource it knows:
//   {"kind": ..., "name": ..., "valid": true|false, "errors": "..."}
// Known: TidbCluster (pingcap.com/v1alpha1, from TiDB Operator's CRD via @kubernetes-models).
import { readFileSync } from "node:fs";
import yaml from "js-yaml";
import { TidbCluster } from "@kubernetes-models/tidb-operator/pingcap.com/v1alpha1/TidbCluster";

const models = { "pingcap.com/v1alpha1/TidbCluster": TidbCluster };
for (const doc of yaml.loadAll(readFileSync(0, "utf8"))) {
  if (!doc) continue;
  const Model = models[`${doc.apiVersion}/${doc.kind}`];
  if (!Model) continue;
  let errors = "";
  try {
    new Model(doc).validate();
  } catch (e) {
    errors = String(e.message || e);
  }
  console.log(JSON.stringify({ kind: doc.kind, name: doc.metadata?.name, valid: !errors, errors }));
}
