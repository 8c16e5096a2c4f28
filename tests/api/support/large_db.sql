-- A large CIFIX LEARN database for timings (PostgreSQL only), seeded into a freshly migrated
-- database: 100,000 students, 100 instructors, 1,000 published courses of 5 modules x 4
-- lessons, 10 enrollments per student (1,000,000), about 10,000,000 lesson_progress rows and
-- about 3,000,000 activity hours spread over the past year.
--
-- Run it on ONE session (settings and the helper function below are per session), step by
-- step or whole: `psql -v ON_ERROR_STOP=1 -d <db> -f tests/api/support/large_db.sql`. The
-- `-- step:` lines split it for a harness that times each step. Sizes: change `seed_size`.
--
-- Shape, so that a benchmark can find its way without queries:
-- * ids are `seed_id(kind, n)`: kind 1 students (n 1..), 2 instructors, 3 courses (n 0..), 4
--   modules, 5 lessons (lesson i of course c is n = c * 20 + i), 6 enrollments, 7 progress.
-- * Courses 0..9 are the big ones: every student s is enrolled in course s % 10 (10,000 each),
--   and in 9 of courses 10..999 (about 909 each).
-- * An enrollment has progressed through its first d = (s * 13 + k * 7) % 21 lessons in outline
--   order: all completed, except the last one in progress unless d = 20 (then the enrollment
--   is completed).
-- * Emails are `student<n>@large.example`, every password hash is unusable.

-- step: session settings
-- Rows are consistent by construction; skipping the foreign-key triggers halves the load.
SET session_replication_role = replica;
SET maintenance_work_mem = '512MB';
SET work_mem = '64MB';
CREATE FUNCTION pg_temp.seed_id(kind int, n bigint) RETURNS uuid LANGUAGE sql IMMUTABLE AS
  $$ SELECT (lpad(to_hex(kind), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid $$;
CREATE TEMP TABLE seed_size AS
  SELECT 100000 AS students, 100 AS instructors, 1000 AS courses, 10 AS enrollments, 30 AS active_hours;
-- The secondary indexes of the big tables are dropped here and built again at the end: one
-- sort per index instead of ten million random inserts.
CREATE TEMP TABLE seed_indexes AS
  SELECT indexname, indexdef FROM pg_indexes
  WHERE schemaname = current_schema() AND tablename IN ('lesson_progress', 'enrollments', 'activity_hours')
    AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE contype IN ('p', 'u'));
DO $$ DECLARE i record; BEGIN
  FOR i IN SELECT indexname FROM seed_indexes LOOP EXECUTE format('DROP INDEX %I', i.indexname); END LOOP;
END $$;

-- step: users
INSERT INTO users (id, email, display_name, password_hash, role, is_active, email_verified,
                   failed_login_count, failed_login_window_start, created_at, updated_at)
SELECT pg_temp.seed_id(1, s), 'student' || s || '@large.example', 'Student ' || s, '!', 'student',
       s % 50 <> 0, s % 3 <> 0, 0, NULL, t, t
FROM seed_size, generate_series(1, students) s,
     LATERAL (SELECT now() - ((s * 7919) % 525600) * interval '1 minute' AS t) x;
INSERT INTO users (id, email, display_name, password_hash, role, is_active, email_verified,
                   failed_login_count, failed_login_window_start, created_at, updated_at)
SELECT pg_temp.seed_id(2, i), 'teacher' || i || '@large.example', 'Teacher ' || i, '!', 'instructor',
       true, true, 0, NULL, now() - interval '400 days', now() - interval '400 days'
FROM seed_size, generate_series(1, instructors) i;

-- step: catalog
INSERT INTO courses (id, slug, instructor_id, title, summary, level, published, created_at, updated_at)
SELECT pg_temp.seed_id(3, c), 'large-' || c, pg_temp.seed_id(2, 1 + c % instructors), 'Course ' || c,
       'A seeded course', 'beginner', true, now() - interval '400 days', now() - interval '400 days'
FROM seed_size, generate_series(0, courses - 1) c;
INSERT INTO modules (id, course_id, title, position, created_at, updated_at)
SELECT pg_temp.seed_id(4, c * 5 + m), pg_temp.seed_id(3, c), 'Module ' || m, m,
       now() - interval '400 days', now() - interval '400 days'
FROM seed_size, generate_series(0, courses - 1) c, generate_series(0, 4) m;
INSERT INTO lessons (id, module_id, course_id, title, kind, position, content, created_at, updated_at)
SELECT pg_temp.seed_id(5, c * 20 + i), pg_temp.seed_id(4, c * 5 + i / 4), pg_temp.seed_id(3, c),
       'Lesson ' || i, 'reading', i % 4, 'Read this.', now() - interval '400 days', now() - interval '400 days'
FROM seed_size, generate_series(0, courses - 1) c, generate_series(0, 19) i;

-- step: enrollments
CREATE TEMP TABLE seed_enrollments AS
SELECT s, k, CASE WHEN k = 0 THEN s % 10 ELSE 10 + (s * 37 + k * 97) % (courses - 10) END AS c,
       (s * 13 + k * 7) % 21 AS depth
FROM seed_size, generate_series(1, students) s, generate_series(0, enrollments - 1) k;
INSERT INTO enrollments (id, user_id, course_id, enrolled_at, completed_at)
SELECT pg_temp.seed_id(6, s * 10 + k), pg_temp.seed_id(1, s), pg_temp.seed_id(3, c),
       now() - interval '380 days' + ((s + k) % 360) * interval '1 day',
       CASE WHEN depth = 20 THEN now() - ((s * 7 + k) % 14) * interval '1 day' END
FROM seed_enrollments;

-- step: lesson progress
INSERT INTO lesson_progress (id, user_id, lesson_id, course_id, status, progress, time_spent_seconds,
                             score, completed_at, created_at, updated_at)
SELECT pg_temp.seed_id(7, (s * 10 + k) * 20 + i), pg_temp.seed_id(1, s), pg_temp.seed_id(5, c * 20 + i),
       pg_temp.seed_id(3, c), CASE WHEN done THEN 'completed' ELSE 'in_progress' END,
       CASE WHEN done THEN 1.0 ELSE 0.5 END, 300, NULL, CASE WHEN done THEN t END, t, t
FROM seed_enrollments e, generate_series(0, 19) i,
     LATERAL (SELECT i < e.depth - 1 OR e.depth = 20 AS done,
                     now() - ((e.s * 31 + e.k * 17 + (20 - i) * 3) % 365) * interval '1 day'
                         - ((e.s + i) % 24) * interval '1 hour' AS t) x
WHERE i < e.depth;

-- step: activity hours
INSERT INTO activity_hours (user_id, hour)
SELECT pg_temp.seed_id(1, s), floor(extract(epoch FROM now()) / 3600)::bigint - (s * 7919 + j * 104729) % 8760
FROM seed_size, generate_series(1, students) s, generate_series(0, active_hours - 1) j
ON CONFLICT DO NOTHING;

-- step: indexes
DO $$ DECLARE i record; BEGIN
  FOR i IN SELECT indexdef FROM seed_indexes LOOP EXECUTE i.indexdef; END LOOP;
END $$;
DROP TABLE seed_enrollments;
SET session_replication_role = origin;

-- step: analyze
VACUUM ANALYZE;
