// Runs usage.ts's `tour` against a live server, so the generated client is proven on real
// answers, not only by the type checker. Environment: CIFIX_URL and a student's
// CIFIX_STUDENT_EMAIL / CIFIX_STUDENT_PASSWORD. Run check.sh first: this only transpiles.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";

const { CIFIX_URL, CIFIX_STUDENT_EMAIL, CIFIX_STUDENT_PASSWORD } = process.env;
for (const [name, value] of Object.entries({ CIFIX_URL, CIFIX_STUDENT_EMAIL, CIFIX_STUDENT_PASSWORD })) {
  assert.ok(value, `${name} is not set`);
}

const here = dirname(fileURLToPath(import.meta.url));
const out = mkdtempSync(join(tmpdir(), "cifix-ts-smoke-"));
try {
  for (const file of ["usage.ts", "src/index.ts"]) {
    const source = readFileSync(join(here, file), "utf8");
    const options = { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 };
    mkdirSync(dirname(join(out, file)), { recursive: true });
    writeFileSync(join(out, file.replace(/\.ts$/, ".js")), ts.transpileModule(source, { compilerOptions: options }).outputText);
  }
  writeFileSync(join(out, "package.json"), '{"type": "module"}');
  symlinkSync(join(here, "node_modules"), join(out, "node_modules"));
  const { tour } = await import(pathToFileURL(join(out, "usage.js")).href);

  // Pages of two, so that `limit` and `cursor` really travel in the query (the demo catalog has three).
  const { courses, nextPage, progress, dashboard } = await tour(CIFIX_URL, CIFIX_STUDENT_EMAIL, CIFIX_STUDENT_PASSWORD, 2);
  assert.equal(courses.length, 2, `limit=2 gave ${courses.length} courses`);
  assert.ok(nextPage.length >= 1, "the next_cursor page has the rest");
  assert.ok(!nextPage.some((c) => courses.some((d) => d.id === c.id)), "the second page repeats none of the first");
  assert.equal(progress.lesson.status, "completed");
  assert.ok(progress.course.percent > 0, `course percent ${progress.course.percent}`);
  const enrolled = dashboard.enrollments_progress.find((p) => p.course_id === progress.course.course_id);
  assert.ok(enrolled, "the dashboard lists the course just started");
  assert.equal(enrolled.completed_lessons, 1);
  assert.equal(dashboard.streak_days, 1);
  // This student has taken no assessment: the path is there, empty, not null.
  assert.deepEqual([dashboard.learning_path.generated_at, dashboard.learning_path.steps], [null, []]);
  console.log(`typescript client: pages of ${courses.length} and ${nextPage.length}, ${progress.course.percent}% of ${courses[0].slug}, streak ${dashboard.streak_days}`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
