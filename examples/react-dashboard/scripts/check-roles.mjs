// The dashboard runs as the front desk: no operation may select a field of a @phi class the
// front desk does not read (SECURITY.md, "Roles and patient information"). The server would
// answer such a field with null and FORBIDDEN, and a mutation selecting one is rolled back whole
// (nothing booked), so this is checked before anything ships. Part of `npm run check`.
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TypeInfo, buildSchema, parse, visit, visitWithTypeInfo } from "graphql";

const HERE = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const ROLE = "front_desk";
/** The @phi classes the role reads (`hms policy`). */
const READS = new Set(["DEMOGRAPHIC", "CONTACT", "SENSITIVE"]);

const schema = buildSchema(readFileSync(resolve(HERE, "../../schema.graphql"), "utf8"));
const operations = join(HERE, "src/operations");
/** @type {string[]} */
const problems = [];
for (const name of readdirSync(operations).filter((f) => f.endsWith(".graphql"))) {
  const document = parse(readFileSync(join(operations, name), "utf8"));
  const info = new TypeInfo(schema);
  visit(
    document,
    visitWithTypeInfo(info, {
      Field(node) {
        const field = info.getFieldDef();
        const phi = field?.astNode?.directives?.find((d) => d.name.value === "phi");
        const phiClass = phi?.arguments?.find((a) => a.name.value === "class")?.value;
        if (phiClass?.kind === "EnumValue" && !READS.has(phiClass.value)) {
          const where = `${info.getParentType()}.${node.name.value}`;
          problems.push(`${name}: ${where} is ${phiClass.value}, which ${ROLE} does not read`);
        }
      },
    }),
  );
}
if (problems.length > 0) {
  process.stderr.write(`${problems.join("\n")}\n`);
  process.exit(1);
}
