-- Shared helpers
--
-- Small functions every domain uses: row timestamps kept by the database, the MFA bar of
-- staff writes, and the test of a written reason. (The caller's claims and ownership tests
-- live with the tables they read; settings.sql holds private.setting.)
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: tests/sql/harness/

set local check_function_bodies = off;

-- Section: row timestamps
--
-- created_at and updated_at are the database's to keep: a client cannot back-date a row.

/**
 * BEFORE INSERT OR UPDATE trigger: sets created_at and updated_at from the clock, whatever
 * the statement asked for, and keeps created_at as it was on update.
 */
create or replace function private.keep_row_timestamps() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    new.created_at := now();
  else
    new.created_at := old.created_at;
  end if;
  new.updated_at := now();
  return new;
end
$$;

-- Section: staff writes need MFA
--
-- Staff are held to the users' bar: a write made by a staff member (the request's role, or the
-- role its token carries, is admin or auditor) needs a multi-factor session (aal2), and a
-- security-sensitive one (a role change, a withdrawal's approval) a recent step-up too. Each
-- table staff may write has the trigger, so a write through any path, an RPC included, meets it.

/**
 * BEFORE INSERT OR UPDATE OR DELETE trigger: a staff member's write needs aal2 (PT403
 * otherwise); with the argument `step_up`, also an MFA step-up within the step-up window
 * (private.has_recent_step_up). Writes by anyone else pass unchecked here.
 */
create or replace function private.staff_writes_need_mfa() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  -- The request's claims, as auth.jwt() reads them (the backend roles have no USAGE on auth).
  claims jsonb := coalesce(nullif(current_setting('request.jwt.claims', true), ''), '{}')::jsonb;
begin
  if current_user in ('admin', 'auditor') or claims ->> 'role' in ('admin', 'auditor') then
    if claims ->> 'aal' is distinct from 'aal2' then
      raise exception 'a staff member''s change to % needs multi-factor authentication (aal2)',
      tg_table_name
      using errcode = 'PT403', hint = 'verify a second factor, then retry';
    end if;
    if 'step_up' = any(tg_argv) and not private.has_recent_step_up() then
      raise exception 'a staff member''s change to % needs a recent MFA step-up', tg_table_name
      using errcode = 'PT403', hint = 'verify a second factor again, then retry';
    end if;
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

-- Section: written reasons
--
-- A decision that settles money carries a reason in words: an admin's approval of a
-- withdrawal (withdrawal_approvals.reason, up to 2000 characters), the resolution that
-- closes a dispute (up to 5000), and an admin's cancel of a withdrawal (its failure_reason,
-- up to the column's 500). Each is kept in its row, and so in the audit row of its write;
-- anything else is refused with PT422 and the rule's message. The checks on the tables hold
-- the first two for every path (NOT VALID: rows recorded before the rule stay as they were).
--
-- A reason is words: white space, invisible characters and punctuation alone are not.
-- PostgreSQL's [[:space:]] does not know Unicode's, so "10 characters once trimmed" would
-- accept twelve zero-width spaces, no-break spaces, byte-order marks, Hangul fillers,
-- braille blanks, control characters, soft hyphens or combining marks alone, or ten full
-- stops. So:
--   * private.written_text(value) is what a text writes: its characters that show nothing
--     removed (controls, Unicode's format characters such as zero-width spaces, joiners,
--     direction marks and the byte-order mark, variation selectors, tags, combining marks
--     standing alone on nothing, invisible fillers), every run of white space (Unicode's
--     too) as one space, trimmed;
--   * private.is_written(value, max_chars) holds when that is at least 10 characters long
--     and holds a letter or a digit (a character that is not white space, punctuation or a
--     symbol), and the value is at most max_chars long once trimmed (the column's bound).

/**
 * The text with its leading and trailing white space removed: what a written reason says.
 * Immutable, for the checks on the tables that keep one; the roles that write those tables
 * execute their checks, so they may call it.
 */
create or replace function private.trimmed(value text) returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select regexp_replace(value, '^[[:space:]]+|[[:space:]]+$', '', 'g')
$$;

grant execute on function private.trimmed(text) to admin;
grant execute on function private.trimmed(text) to authenticated;
grant execute on function private.trimmed(text) to escrow_service;
grant execute on function private.trimmed(text) to payment_service;

/**
 * What `value` writes: its characters that show nothing removed (controls, format
 * characters, variation selectors, tags, combining marks, invisible fillers), each run of
 * white space (Unicode's spaces included) as one space, trimmed.
 */
create or replace function private.written_text(value text) returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select btrim(regexp_replace(
    regexp_replace(
      regexp_replace(
        value,
        '[[:space:]\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]', ' ', 'g'
      ),
      '[\u0001-\u001F\u007F-\u009F\u00AD\u034F\u0600-\u0605\u061C\u06DD\u070F\u115F\u1160'
      || '\u17B4\u17B5\u180E\u200B-\u200F\u202A-\u202E\u2060-\u206F\u2800\u3164\uFE00-\uFE0F'
      || '\uFEFF\uFFA0\uFFF9-\uFFFB\U000E0000-\U000E0FFF\u0300-\u036F\u1AB0-\u1AFF'
      || '\u1DC0-\u1DFF\u20D0-\u20FF\uFE20-\uFE2F]',
      '', 'g'
    ),
    ' {2,}', ' ', 'g'
  ), ' ')
$$;

grant execute on function private.written_text(text) to admin;
grant execute on function private.written_text(text) to authenticated;
grant execute on function private.written_text(text) to escrow_service;
grant execute on function private.written_text(text) to payment_service;
grant execute on function private.written_text(text) to service_role;

/**
 * Whether `value` is a written reason: at least 10 characters of writing
 * (private.written_text) with a letter or a digit among them, and at most `max_chars` long
 * once trimmed.
 */
create or replace function private.is_written(value text, max_chars integer) returns boolean
language sql
immutable
parallel safe
set search_path = ''
as $$
  select coalesce(
    char_length(private.trimmed(value)) <= max_chars
    and char_length(private.written_text(value)) >= 10
    and private.written_text(value) ~ (
      '[^ !-/:-@[-`{-~\u00A1-\u00BF\u00D7\u00F7\u2010-\u2027\u2030-\u205E\u20A0-\u20CF'
      || '\u2190-\u2BFF\u3001-\u3003\u3008-\u3020\u3030\u30FB\uFE10-\uFE1F\uFE30-\uFE6F'
      || '\uFF01-\uFF0F\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65\U0001F000-\U0001FAFF]'
    ),
    false
  )
$$;

grant execute on function private.is_written(text, integer) to admin;
grant execute on function private.is_written(text, integer) to authenticated;
grant execute on function private.is_written(text, integer) to escrow_service;
grant execute on function private.is_written(text, integer) to payment_service;
grant execute on function private.is_written(text, integer) to service_role;

-- Section: scheduled jobs
--
-- Where pg_cron is installed in this database (on Supabase once the project enables it; in
-- the embedded cluster's `postgres` database), a domain's deploy schedules its jobs with
-- private.schedule_job; elsewhere nothing is scheduled and the answer says what to run instead.

/**
 * Schedule `job_command` as pg_cron job `job_name` on `job_schedule`, where the extension is
 * installed in this database; a job of the same name is replaced, so it is safe to run again.
 * Returns what it did; without pg_cron, nothing is scheduled and the answer ends with
 * `without_cron`, what to run instead.
 */
create or replace function private.schedule_job(
  job_name text, job_schedule text, job_command text, without_cron text
) returns text
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select from pg_catalog.pg_extension as e where e.extname = 'pg_cron') then
    return 'pg_cron is not installed in this database: nothing scheduled; ' || without_cron;
  end if;
  -- Dynamic, its schema named apart: the cron schema exists only where the extension does.
  execute format('select %I.schedule($1, $2, $3)', 'cron')
  using job_name, job_schedule, job_command;
  return 'scheduled with pg_cron: ' || job_name;
end
$$;
