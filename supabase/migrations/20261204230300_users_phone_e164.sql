-- A user's phone number has a format: E.164, a + and at most 15 digits (ITU-T E.164 caps an
-- international number at 15 digits), with no spaces or punctuation.
--
-- It used to be free text of up to 32 characters, and the card-data guard skipped it, since a
-- phone number written with its spaces can look like a card number. That exemption let a
-- 16-digit number that passes Luhn be stored in it. Now the format keeps out everything but a
-- phone number (a card number of 16 to 19 digits cannot be one), and the guard reads the column
-- like any other since 20261204230000_card_number_forms.sql: a 13- to 15-digit number that
-- passes Luhn is refused as a card number even here, since nothing tells the two apart.
--
-- Existing numbers are normalised where that is unambiguous: spaces, dots, dashes, slashes
-- and parentheses removed, a leading 00 read as +, and an empty string as no number. A number
-- that is still not E.164 (no country code, letters, too long), or whose E.164 form the guard
-- reads as a card number, stops the migration, naming the user ids (never the numbers):
-- someone who can reach those users must correct or clear them first, for
-- example `update public.users set phone = null where id = '…'` (which the audit trail
-- records, with any card number in the old value removed).

/** A phone number in E.164 form, or null when `candidate` cannot be read as one. */
create function private.e164_phone(candidate text) returns text
language sql
immutable
strict
parallel safe
set search_path = ''
as $$
  select case
    when normalized ~ '^\+[1-9][0-9]{6,14}$' then normalized
  end
  from (
    select regexp_replace(
      regexp_replace(btrim(candidate), '[[:space:]()./-]', '', 'g'), '^00', '+'
    ) as normalized
  ) as n
$$;

revoke all on function private.e164_phone(text) from public;

do $$
declare
  unreadable text;
begin
  -- Run as a maintenance change: the audit rows name the owner, not a request.
  update public.users set phone = null where btrim(phone) = '';
  update public.users set phone = private.e164_phone(phone)
  where phone is not null and phone is distinct from private.e164_phone(phone)
    and private.e164_phone(phone) is not null
    and not private.holds_card_number(private.e164_phone(phone));
  select string_agg(u.id::text, ', ' order by u.id) into unreadable
  from public.users as u
  where u.phone is distinct from private.e164_phone(u.phone)
    or private.holds_card_number(u.phone);
  if unreadable is not null then
    raise exception 'users.phone must be an E.164 number (+ and at most 15 digits) that is no '
    'card number: the phone numbers of these users are not: %', unreadable
    using errcode = 'PT422',
    hint = 'Correct or clear them (update public.users set phone = null where id = …), '
    'then deploy again.';
  end if;
end
$$;

alter table public.users
drop constraint users_phone_check,
add constraint users_phone_e164 check (phone ~ '^\+[1-9][0-9]{6,14}$');

comment on column public.users.phone is
'An E.164 phone number: + and 7 to 15 digits, no spaces. The card-data guard reads it.';

/**
 * BEFORE INSERT OR UPDATE OF phone on public.users: a phone number that is not E.164 is
 * refused with a message that says so (and that, unlike the check constraint's, does not
 * echo the row). It runs before the card-data guard, so that a value too long to be a phone
 * number is refused for its format.
 */
create function private.check_user_phone() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.phone is not null and new.phone !~ '^\+[1-9][0-9]{6,14}$' then
    raise exception 'users.phone must be an E.164 number: + and 7 to 15 digits, without spaces'
    using errcode = 'PT422',
    hint = 'Write it with its country code, for example +14155550123.';
  end if;
  return new;
end
$$;

revoke all on function private.check_user_phone() from public;

create trigger check_user_phone
before insert or update of phone on public.users
for each row execute function private.check_user_phone();
