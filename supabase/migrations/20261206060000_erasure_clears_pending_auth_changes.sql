-- An erasure also empties the auth server's pending email or phone change and its tokens, and
-- deletes the auth server's own log entries about the user, where that version has them.

/**
 * Erase `subject`'s personal data, for `reason` (10 to 2000 characters of writing, naming no
 * one): PT422 without it, PT404 for no such user, PT409 for a user already erased or with
 * open money (private.open_money, named in the message and nothing changed).
 *   * public.users: email, full_name and phone set to null, erased_at set;
 *   * auth.users: email, phone, password, tokens and both metadata cleared, banned for ever;
 *     the account's MFA factors, identities, sessions, refresh and one-time tokens deleted
 *     (each of the last four where the auth server has the table);
 *   * payment and payout methods: nickname and metadata cleared;
 *   * notifications: deleted;
 *   * the user's audit fingerprint key: deleted (crypto-shredding, audit_capture.sql).
 * Ids, amounts, the ledger and the audit trail are left whole. Writes an ERASE audit row
 * with the reason. Returns what was done. Only its owner executes it: admins call
 * public.erase_user, operators `payguard users erase`.
 */
create or replace function private.erase_user(subject uuid, reason text) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  profile public.users;
  open_items text[];
  erased timestamptz := now();
  methods bigint;
  payout bigint;
  notes bigint;
  factors bigint;
  removed bigint;
  auth_rows jsonb;
  auth_table text;
  auth_column text;
  actor private.audit_actor;
  summary jsonb;
begin
  if not private.is_written(reason, 2000) then
    raise exception 'erasing user % needs a written reason of 10 to 2000 characters', subject
    using errcode = 'PT422';
  end if;
  select * into profile from public.users as u where u.id = subject for update;
  if not found then
    raise exception 'no user %', subject using errcode = 'PT404';
  end if;
  if profile.erased_at is not null then
    raise exception 'user % was already erased at %', subject, profile.erased_at
    using errcode = 'PT409';
  end if;
  open_items := private.open_money(subject);
  if cardinality(open_items) > 0 then
    raise exception 'user % has open money and cannot be erased: %', subject,
    array_to_string(open_items, '; ')
    using errcode = 'PT409',
    hint = 'settle, cancel or pay out each of these first, then erase';
  end if;

  update public.users as u
  set email = null, full_name = null, phone = null, erased_at = erased
  where u.id = subject;
  update public.payment_methods as m set nickname = null, metadata = '{}'
  where m.user_id = subject and (m.nickname is not null or m.metadata <> '{}');
  get diagnostics methods = row_count;
  update public.payout_methods as m set nickname = null, metadata = '{}'
  where m.user_id = subject and (m.nickname is not null or m.metadata <> '{}');
  get diagnostics payout = row_count;
  delete from public.notifications as n where n.user_id = subject;
  get diagnostics notes = row_count;

  update auth.users as a
  -- The auth server reads its token columns as strings: emptied, never null.
  set email = null, phone = null, encrypted_password = '', email_confirmed_at = null,
    phone_confirmed_at = null, confirmation_token = '', recovery_token = '',
    email_change = '', last_sign_in_at = null, raw_user_meta_data = '{}',
    raw_app_meta_data = '{}', banned_until = 'infinity', updated_at = erased
  where a.id = subject;
  delete from auth.mfa_factors as f where f.user_id = subject;
  get diagnostics factors = row_count;
  auth_rows := jsonb_build_object('mfa_factors', factors);
  -- Tables the auth server has on Supabase, not all of them in every version: each is
  -- cleared where it exists and has a user_id column (named apart: dynamic SQL).
  foreach auth_table in array array['identities', 'sessions', 'refresh_tokens', 'one_time_tokens']
  loop
    if exists (
      select from pg_catalog.pg_attribute as att
      where att.attrelid = to_regclass(format('%I.%I', 'auth', auth_table))
        and att.attname = 'user_id' and not att.attisdropped
    ) then
      execute format('delete from %I.%I where user_id::text = $1', 'auth', auth_table)
      using subject::text;
      get diagnostics removed = row_count;
      auth_rows := auth_rows || jsonb_build_object(auth_table, removed);
    end if;
  end loop;

  -- A change of email or phone waiting for confirmation, and its tokens, where the auth
  -- server's version has them: emptied (named apart: dynamic SQL).
  foreach auth_column in array array[
    'phone_change', 'phone_change_token', 'email_change_token_new',
    'email_change_token_current', 'reauthentication_token'
  ]
  loop
    if exists (
      select from pg_catalog.pg_attribute as att
      where att.attrelid = 'auth.users'::regclass and att.attname = auth_column
        and not att.attisdropped
    ) then
      execute format('update %I.users set %I = $1 where id = $2', 'auth', auth_column)
      using '', subject;
    end if;
  end loop;
  -- The auth server's own log: its entries about the user hold their email.
  if to_regclass(format('%I.%I', 'auth', 'audit_log_entries')) is not null then
    execute format(
      'delete from %I.audit_log_entries where payload ->> $2 = $1', 'auth'
    )
    using subject::text, 'actor_id';
    get diagnostics removed = row_count;
    auth_rows := auth_rows || jsonb_build_object('audit_log_entries', removed);
  end if;

  delete from private.audit_fingerprint_keys as k where k.user_id = subject;

  summary := jsonb_build_object(
    'user_id', subject,
    'erased_at', erased,
    'payment_methods', methods,
    'payout_methods', payout,
    'notifications_deleted', notes,
    'auth_rows_deleted', auth_rows,
    'fingerprint_key', 'shredded'
  );
  actor := private.audit_actor();
  insert into public.payment_audit_logs (
    operation, entity_type, entity_id, user_id, user_role, ip_address, user_agent,
    new_values, success, metadata
  )
  values (
    'ERASE', 'users', subject::text, actor.user_id, actor.user_role, actor.ip_address,
    actor.user_agent, summary || jsonb_build_object('reason', reason), true, actor.metadata
  );
  return summary;
end
$$;
