// How a web or mobile client uses the typed API client. `tsc --strict` checks this file against
// the generated schema, and smoke.mjs runs `tour` against a live server, so it stays true.
import { createCifixClient, type CifixClient, type Schemas } from "./src/index.js";

export interface TourResult {
  courses: Schemas["CourseSummary"][];
  nextPage: Schemas["CourseSummary"][];
  progress: Schemas["LessonProgressResult"];
  dashboard: Schemas["Dashboard"];
}

// openapi-fetch returns `{data}` or `{error}` (the problem+json body); a caller must look.
function must<T>(step: string, result: { data?: T; error?: unknown; response: Response }): T {
  if (result.data === undefined) {
    const problem = result.error as Partial<Schemas["Problem"]> | undefined;
    throw new Error(`${step}: HTTP ${result.response.status} ${problem?.detail ?? ""}`);
  }
  return result.data;
}

/** Signs a student in, enrolls in the first course, completes its first lesson, reads the dashboard. */
export async function tour(baseUrl: string, email: string, password: string, limit = 10): Promise<TourResult> {
  let accessToken: string | undefined;
  const api = createCifixClient(baseUrl, () => accessToken);

  const session = must("sign in", await api.POST("/api/v1/auth/login", { body: { email, password } }));
  accessToken = session.access_token;
  const role: Schemas["Role"] = session.user.role;
  if (role !== "student") throw new Error(`sign in: expected a student, got ${role}`);

  const page = must("list courses", await api.GET("/api/v1/courses", { params: { query: { limit } } }));
  const next = page.next_cursor
    ? must("next page", await api.GET("/api/v1/courses", { params: { query: { limit, cursor: page.next_cursor } } }))
    : { items: [] };
  const course = page.items[0];
  if (!course) throw new Error("list courses: no course to enroll in");

  const path = { params: { path: { id: course.id } } };
  must("enroll", await api.POST("/api/v1/courses/{id}/enrollments", path));
  const outline = must("read the course", await api.GET("/api/v1/courses/{id}", path));
  const lesson = outline.modules[0]?.lessons[0];
  if (!lesson) throw new Error(`read the course: ${course.slug} has no lesson`);

  const progress = must(
    "update progress",
    await api.PUT("/api/v1/me/lessons/{lesson_id}/progress", {
      params: { path: { lesson_id: lesson.id } },
      body: { status: "completed", time_spent_seconds: 120, score: 90 },
    }),
  );

  const dashboard = must("read the dashboard", await api.GET("/api/v1/me/dashboard", { params: { query: { tz_offset_minutes: 60 } } }));
  const firstStep: Schemas["Step"] | undefined = dashboard.learning_path.steps[0];
  if (firstStep) console.log(`next on the learning path: ${firstStep.reason}`);
  return { courses: page.items, nextPage: next.items, progress, dashboard };
}

// Never called: each line below must fail to compile, or tsc reports the unused @ts-expect-error.
export async function mistakesTheTypesCatch(api: CifixClient): Promise<void> {
  const session = await api.POST("/api/v1/auth/login", { body: { email: "a@example.com", password: "x" } });
  // @ts-expect-error the field is `access_token`
  console.log(session.data?.accessToken);

  await api.GET("/api/v1/courses", {
    params: {
      query: {
        // @ts-expect-error the course list pages by `cursor`, it has no `page`
        page: 2,
      },
    },
  });
  // @ts-expect-error `limit` is a number
  await api.GET("/api/v1/courses", { params: { query: { limit: "10" } } });
  // @ts-expect-error `limit` is a query parameter, not part of the path
  await api.GET("/api/v1/courses", { params: { path: { limit: 10 } } });
  // @ts-expect-error a path the API does not have
  await api.GET("/api/v1/course", {});

  await api.PUT("/api/v1/me/lessons/{lesson_id}/progress", {
    params: { path: { lesson_id: "x" } },
    // @ts-expect-error `status` is "in_progress" or "completed"
    body: { status: "done" },
  });
  await api.PUT("/api/v1/me/lessons/{lesson_id}/progress", {
    params: { path: { lesson_id: "x" } },
    body: {
      status: "completed",
      // @ts-expect-error the body has no `percent` (the course's percent is in the answer)
      percent: 1,
    },
  });
  // @ts-expect-error the lesson id is required
  await api.PUT("/api/v1/me/lessons/{lesson_id}/progress", { body: { status: "completed" } });

  const dashboard = await api.GET("/api/v1/me/dashboard");
  // @ts-expect-error the dashboard's field is `streak_days`
  console.log(dashboard.data?.streak);
}
