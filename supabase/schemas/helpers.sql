-- Shared helpers
--
-- Small functions every domain uses: row timestamps kept by the database, the request's caller
-- and claims, written reasons, hot helpers kept in PL/pgSQL so their plans are cached.
--
-- This file is the current definition of everything in its domain. Change it first, then
-- write the migration that makes the same change (docs/schema-changes.md); `payguard schema
-- check` proves that the migrations and these files build the same database.
-- See also: tests/sql/harness/

set local check_function_bodies = off;

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

-- An admin's approval of a withdrawal carries a written reason.
--
-- Dual control recorded who approved a large withdrawal and when, never why. Each approval
-- now carries a reason of 10 to 2000 characters once leading and trailing white space is
-- trimmed (PT422 otherwise), kept in the row and so in the audit row of its insert.
-- approve_withdrawal takes it as a new parameter, before the idempotency key (the old
-- signature is dropped); a direct insert names it (the policy migration after this one
-- grants admin the column). Approvals recorded before stay as they were recorded: the
-- column's check is NOT VALID, so it holds every approval from now on.
--
-- The checks of an approval run in the order who, whether, what: never the withdrawal's
-- owner (PT403), only a withdrawal that waits for approval (PT409), then the reason. And an
-- approval that was acted on (its withdrawal is no longer waiting) is a settled record: it
-- is never updated nor deleted, by any role.

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

-- A written reason is words: white space, invisible characters and punctuation alone are not.
--
-- Closing a dispute and approving a withdrawal needed 10 characters "once trimmed" of white
-- space, and PostgreSQL's [[:space:]] does not know Unicode's: twelve zero-width spaces,
-- no-break spaces, byte-order marks, Hangul fillers, braille blanks, control characters,
-- soft hyphens or combining marks alone, or ten full stops, closed a dispute (and settled its
-- money) or approved a withdrawal. And an admin canceled a withdrawal (a settlement: its
-- reservation is voided) without any reason at all. Now:
--   * private.written_text(value) is what a text writes: its characters that show nothing
--     removed (controls, Unicode's format characters such as zero-width spaces, joiners,
--     direction marks and the byte-order mark, variation selectors, tags, combining marks
--     standing alone on nothing, invisible fillers), every run of white space (Unicode's
--     too) as one space, trimmed;
--   * private.is_written(value, max_chars) holds when that is at least 10 characters long
--     and holds a letter or a digit (a character that is not white space, punctuation or a
--     symbol), and the value is at most max_chars long once trimmed (the column's bound);
--   * a dispute's resolution (to close it), an approval's reason, and an admin's cancel of a
--     withdrawal (its failure_reason, up to the column's 500 characters) must be written,
--     with PT422 and the rule's message otherwise; the checks on the tables hold the first
--     two for every path, and replace the trimmed-length ones (NOT VALID: the rows already
--     recorded stay as they were).

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

-- Privileges

grant execute on function private.is_written(text, integer) to admin;
grant execute on function private.is_written(text, integer) to authenticated;
grant execute on function private.is_written(text, integer) to escrow_service;
grant execute on function private.is_written(text, integer) to payment_service;
grant execute on function private.is_written(text, integer) to service_role;
grant execute on function private.trimmed(text) to admin;
grant execute on function private.trimmed(text) to authenticated;
grant execute on function private.trimmed(text) to escrow_service;
grant execute on function private.trimmed(text) to payment_service;
grant execute on function private.written_text(text) to admin;
grant execute on function private.written_text(text) to authenticated;
grant execute on function private.written_text(text) to escrow_service;
grant execute on function private.written_text(text) to payment_service;
grant execute on function private.written_text(text) to service_role;
