-- Audit capture: on every audited table, an INSERT, an UPDATE and a DELETE each leave exactly
-- one row in public.payment_audit_logs, naming the operation, the table and the row's key, who
-- acted (the signed-in user and their app role, a service role, or the owner), from where
-- (address, user agent, correlation id), and the old and new values, with the processor's
-- secrets redacted. What the database refuses (rewriting the ledger, deleting rows that
-- others depend on, truncating) leaves no audit row at all.
begin;
select plan(81);

-- Its payout methods are new and withdrawn to at once: their cool-down is lifted (the
-- cool-down's own tests: withdrawals/payout_method_cool_down.test.sql).
update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- helpers for this file only, rolled back with it; all of them are called as postgres

/**
 * The audit trail's fingerprint of `value` in `column_name` of the user whose id the setting
 * fixture.<fixture> holds (personal data is recorded only so: audit_capture.sql).
 */
create function tests.fingerprint(fixture text, column_name text, value text) returns jsonb
language sql
stable
as $$
  select to_jsonb(private.audit_fingerprint(
    current_setting('fixture.' || fixture)::uuid, column_name, value
  ))
$$;

/** Remember the audit log's highest seq: what a statement writes next lies above it. */
create function tests.mark() returns void
language plpgsql
as $$
begin
  perform set_config(
    'fixture.mark',
    (select coalesce(max(l.seq), 0) from public.payment_audit_logs as l)::text,
    true
  );
end
$$;

/**
 * Mark, then begin a request as PostgREST would, as `who`: hana (a homeowner behind a proxy
 * of her own, which forwarded her LAN address; the gateway appended her proxy's address),
 * carl (a contractor behind a load balancer that sets x-real-ip), ada (an admin), or a
 * service role. Each user request carries its own correlation id. Records in fixture.actor
 * what the audit row of the request must say about its actor. With `as_owner`, the request
 * stays set but the statement runs as postgres (as `reset role` would).
 */
create function tests.begin_request(
  who text, request_id text, method text, path text, as_owner boolean default false
) returns void
language plpgsql
as $$
declare
  headers jsonb;
  actor jsonb;
begin
  perform tests.mark();
  case who
    when 'hana' then
      headers := jsonb_build_object(
        'X-Forwarded-For', '10.0.0.1, 203.0.113.9', 'User-Agent', 'payguard-web/4.2 (Firefox)',
        'X-Request-Id', request_id
      );
      actor := jsonb_build_object(
        'user_id', tests.get_supabase_uid('hana'), 'user_role', 'homeowner',
        'ip_address', '203.0.113.9', 'user_agent', 'payguard-web/4.2 (Firefox)',
        'correlation_id', request_id, 'db_role', 'authenticated'
      );
    when 'carl' then
      -- x-correlation-id wins over x-request-id
      headers := jsonb_build_object(
        'X-Real-IP', '198.51.100.4', 'User-Agent', 'payguard-ios/2.3',
        'X-Correlation-Id', request_id, 'X-Request-Id', 'lb-' || request_id
      );
      actor := jsonb_build_object(
        'user_id', tests.get_supabase_uid('carl'), 'user_role', 'contractor',
        'ip_address', '198.51.100.4', 'user_agent', 'payguard-ios/2.3',
        'correlation_id', request_id, 'db_role', 'authenticated'
      );
    when 'ada' then
      headers := jsonb_build_object(
        'X-Forwarded-For', '192.0.2.44', 'User-Agent', 'payguard-admin/1.0',
        'X-Request-Id', request_id
      );
      actor := jsonb_build_object(
        'user_id', tests.get_supabase_uid('ada'), 'user_role', 'admin',
        'ip_address', '192.0.2.44', 'user_agent', 'payguard-admin/1.0',
        'correlation_id', request_id, 'db_role', 'admin'
      );
    else
      -- a backend service: no forwarding header, so the connection's own address
      headers := jsonb_build_object('User-Agent', 'payguard-worker/1.0', 'X-Request-Id', request_id);
      actor := jsonb_build_object(
        'user_id', null, 'user_role', who, 'ip_address', host(inet_client_addr()),
        'user_agent', 'payguard-worker/1.0', 'correlation_id', request_id, 'db_role', who
      );
  end case;
  if who in ('hana', 'carl', 'ada') then
    perform tests.authenticate_as(
      who, aal => 'aal2', method => method, path => path, headers => headers,
      role_name => case who when 'ada' then 'admin' else 'authenticated' end
    );
  else
    perform tests.authenticate_as_service(who, method => method, path => path, headers => headers);
  end if;
  if as_owner then
    perform set_config('role', 'none', true);
    actor := actor || '{"db_role": "postgres"}';
  end if;
  perform set_config(
    'fixture.actor',
    (actor || jsonb_build_object('method', upper(method), 'path', path))::text,
    true
  );
end
$$;

/**
 * Mark, then act as the owner outside any request (a migration, a maintenance session): the
 * request settings an earlier request left in this transaction are cleared. The address is
 * then the connection's own: none over the unix socket that the tests use.
 */
create function tests.begin_owner_change() returns void
language plpgsql
as $$
begin
  if current_user <> 'postgres' then
    raise exception 'begin_owner_change runs as postgres, not %: reset role first', current_user;
  end if;
  perform tests.mark();
  perform set_config('request.jwt.claims', '', true);
  perform set_config('request.headers', '', true);
  perform set_config('request.method', '', true);
  perform set_config('request.path', '', true);
  perform set_config('request.cookies', '', true);
  perform set_config(
    'fixture.actor',
    jsonb_build_object(
      'user_id', null, 'user_role', 'postgres', 'ip_address', host(inet_client_addr()),
      'user_agent', null, 'correlation_id', null, 'db_role', 'postgres',
      'method', null, 'path', null
    )::text,
    true
  );
end
$$;

/** A redacted value's "[redacted <fingerprint>]" read as "[redacted]" (checked apart below). */
create function tests.fingerprint_as_redacted(value jsonb) returns jsonb
language sql
immutable
as $$
  select case
    when value #>> '{}' ~ '^\[redacted [0-9a-f]{16}\]$' then '"[redacted]"'::jsonb
    else value
  end
$$;

/** The fingerprint the audit trail keeps of a redacted value. */
create function tests.fingerprint(secret text) returns jsonb
language sql
immutable
as $$
  select to_jsonb('[redacted ' || left(encode(sha256(convert_to(secret, 'UTF8')), 'hex'), 16) || ']')
$$;

/**
 * The audit rows written since the mark, of `audited_type` and `audited_id` when given (all
 * rows when null), as a JSON array: the operation, entity, actor, success, and the old and
 * new values of `spot_columns` (null when the row has no old or no new values).
 */
create function tests.audited(
  audited_type text, audited_id text, spot_columns text [] default '{}'
) returns jsonb
language sql
stable
as $$
  select coalesce(jsonb_agg(
    jsonb_build_object(
      'operation', l.operation,
      'entity_type', l.entity_type,
      'entity_id', l.entity_id,
      'user_id', l.user_id,
      'user_role', l.user_role,
      'ip_address', l.ip_address,
      'user_agent', l.user_agent,
      'correlation_id', l.metadata ->> 'correlation_id',
      'db_role', l.metadata ->> 'db_role',
      'method', l.metadata ->> 'method',
      'path', l.metadata ->> 'path',
      'success', l.success,
      'old', (
        select jsonb_object_agg(c, tests.fingerprint_as_redacted(l.old_values -> c))
        from unnest(spot_columns) as c
        where l.old_values is not null
      ),
      'new', (
        select jsonb_object_agg(c, tests.fingerprint_as_redacted(l.new_values -> c))
        from unnest(spot_columns) as c
        where l.new_values is not null
      )
    )
    order by l.seq
  ), '[]')
  from public.payment_audit_logs as l
  where l.seq > current_setting('fixture.mark')::bigint
    and (audited_type is null or l.entity_type = audited_type)
    and (audited_id is null or l.entity_id = audited_id)
$$;

/** What tests.audited must return for one change by the actor in fixture.actor. */
create function tests.expected(
  operation text, entity_type text, entity_id text, old_values jsonb, new_values jsonb
) returns jsonb
language sql
stable
as $$
  select jsonb_build_array(
    current_setting('fixture.actor')::jsonb || jsonb_build_object(
      'operation', operation, 'entity_type', entity_type, 'entity_id', entity_id,
      'success', true, 'old', old_values, 'new', new_values
    )
  )
$$;

/** How many audit rows were written since the mark. */
create function tests.audit_rows_since_mark() returns integer
language sql
stable
as $$
  select count(*)::integer from public.payment_audit_logs as l
  where l.seq > current_setting('fixture.mark')::bigint
$$;

-- fixtures, as postgres: hana (homeowner), carl (contractor), ada and abe (admins), and the
-- rows that the deletes below need, made before any mark
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('abe');
update public.users set role = 'admin'
where id in (tests.get_supabase_uid('ada'), tests.get_supabase_uid('abe'));
select set_config('fixture.hana', tests.get_supabase_uid('hana')::text, true);
select set_config('fixture.carl', tests.get_supabase_uid('carl')::text, true);
select set_config('fixture.ada', tests.get_supabase_uid('ada')::text, true);
select set_config('fixture.abe', tests.get_supabase_uid('abe')::text, true);
insert into public.projects (id, owner_id, title)
values ('10000000-0000-4000-8000-0000000000d1', tests.get_supabase_uid('hana'), 'Garden shed');
insert into public.payout_methods (
  id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency
)
values ('50000000-0000-4000-8000-000000000001', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_CarlPayout01'), tests.sealed_token(), tests.token_lookup('ba_CarlPayout01'), 'USD');

-- public.users --------------------------------------------------------------------------------

-- a sign-up: the profile is created by the trigger on auth.users, as the owner
select tests.begin_owner_change();
select set_config('fixture.zed', tests.create_supabase_user('zed')::text, true);
select is(
  tests.audited(null, null, '{email,role}'),
  tests.expected('INSERT', 'users', current_setting('fixture.zed'), null,
    jsonb_build_object('email', tests.fingerprint('zed', 'email', 'zed@example.test'), 'role', 'homeowner')),
  'a new profile leaves one audit row: an INSERT of the user, by postgres, with no request'
);
select ok(
  tests.fingerprint('zed', 'email', 'zed@example.test') #>> '{}'
  ~ ('^\[personal ' || current_setting('fixture.zed') || ' [0-9a-f]{64}\]$'),
  'a profile''s email is recorded as its user''s id and an HMAC-SHA-256 under that user''s key, never in clear'
);

select tests.begin_request('hana', 'req-users-patch', 'PATCH', '/rest/v1/users');
update public.users set full_name = 'Hana Okafor' where id = auth.uid();
reset role;
select is(
  tests.audited(null, null, '{full_name}'),
  tests.expected('UPDATE', 'users', current_setting('fixture.hana'),
    '{"full_name": null}', jsonb_build_object('full_name', tests.fingerprint('hana', 'full_name', 'Hana Okafor'))),
  'a user renaming herself leaves one audit row: an UPDATE by her, from the address our gateway appended'
);

select set_config(
  'fixture.zed_email', tests.fingerprint('zed', 'email', 'zed@example.test')::text, true
);
select tests.begin_owner_change();
delete from public.users where id = current_setting('fixture.zed')::uuid;
select is(
  tests.audited(null, null, '{email}'),
  tests.expected('DELETE', 'users', current_setting('fixture.zed'),
    jsonb_build_object('email', current_setting('fixture.zed_email')::jsonb), null),
  'removing a profile leaves one audit row: a DELETE with the old values'
);
-- the key is shredded when the transaction commits: fire that now
set constraints shred_audit_fingerprint_key immediate;
select is(
  tests.fingerprint('zed', 'email', 'zed@example.test'),
  null,
  'removing a profile shreds its fingerprint key: its fingerprints match no value any more'
);
set constraints shred_audit_fingerprint_key deferred;

-- public.projects -----------------------------------------------------------------------------

select tests.begin_request('hana', 'req-projects-post', 'POST', '/rest/v1/projects');
with added as (
  insert into public.projects (title, contractor_id)
  values ('Kitchen remodel', current_setting('fixture.carl')::uuid)
  returning id
)
select set_config('fixture.project', id::text, true) from added;
reset role;
select is(
  tests.audited(null, null, '{title,owner_id}'),
  tests.expected('INSERT', 'projects', current_setting('fixture.project'), null,
    jsonb_build_object('title', 'Kitchen remodel', 'owner_id', current_setting('fixture.hana'))),
  'creating a project leaves one audit row: an INSERT by its owner'
);

select tests.begin_request('hana', 'req-projects-patch', 'PATCH', '/rest/v1/projects');
update public.projects set title = 'Kitchen and pantry remodel'
where id = current_setting('fixture.project')::uuid;
reset role;
select is(
  tests.audited(null, null, '{title}'),
  tests.expected('UPDATE', 'projects', current_setting('fixture.project'),
    '{"title": "Kitchen remodel"}', '{"title": "Kitchen and pantry remodel"}'),
  'renaming a project leaves one audit row: an UPDATE with the old and the new title'
);

select tests.begin_request('service_role', 'req-projects-delete', 'DELETE', '/rest/v1/projects');
delete from public.projects where id = '10000000-0000-4000-8000-0000000000d1';
reset role;
select is(
  tests.audited(null, null, '{title}'),
  tests.expected('DELETE', 'projects', '10000000-0000-4000-8000-0000000000d1',
    '{"title": "Garden shed"}', null),
  'deleting a project that nothing depends on leaves one audit row: a DELETE by service_role'
);

-- public.project_milestones -------------------------------------------------------------------

select tests.begin_request('hana', 'req-milestones-post', 'POST', '/rest/v1/project_milestones');
with added as (
  insert into public.project_milestones (project_id, position, title, amount_minor, currency)
  values (current_setting('fixture.project')::uuid, 1, 'Cabinets', 40000, 'USD')
  returning id
)
select set_config('fixture.milestone', id::text, true) from added;
reset role;
select is(
  tests.audited(null, null, '{title,amount_minor}'),
  tests.expected('INSERT', 'project_milestones', current_setting('fixture.milestone'), null,
    '{"title": "Cabinets", "amount_minor": 40000}'),
  'adding a milestone leaves one audit row: an INSERT by the project''s owner'
);

select tests.begin_request('hana', 'req-milestones-patch', 'PATCH', '/rest/v1/project_milestones');
update public.project_milestones set due_on = '2026-12-15'
where id = current_setting('fixture.milestone')::uuid;
reset role;
select is(
  tests.audited(null, null, '{due_on}'),
  tests.expected('UPDATE', 'project_milestones', current_setting('fixture.milestone'),
    '{"due_on": null}', '{"due_on": "2026-12-15"}'),
  'setting a milestone''s due date leaves one audit row: an UPDATE'
);

-- two more milestones, as postgres: one to pay and delete the payment of, one to delete
insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
values
('20000000-0000-4000-8000-000000000002', current_setting('fixture.project')::uuid, 2, 'Counters', 30000, 'USD'),
('20000000-0000-4000-8000-0000000000d3', current_setting('fixture.project')::uuid, 3, 'Backsplash', 8000, 'USD');
select tests.begin_request('service_role', 'req-milestones-delete', 'DELETE', '/rest/v1/project_milestones');
delete from public.project_milestones where id = '20000000-0000-4000-8000-0000000000d3';
reset role;
select is(
  tests.audited(null, null, '{title}'),
  tests.expected('DELETE', 'project_milestones', '20000000-0000-4000-8000-0000000000d3',
    '{"title": "Backsplash"}', null),
  'deleting a milestone that nothing depends on leaves one audit row: a DELETE by service_role'
);

-- public.payment_methods: the processor's ids are redacted ------------------------------------

-- hana's customer at the processor, recorded before her first card is saved
insert into public.processor_customers (user_id, processor_customer_id_sealed, processor_customer_id_lookup)
values (tests.get_supabase_uid('hana'), tests.sealed_token(), tests.token_lookup('cus_HanaSecret01'));
select tests.begin_request('hana', 'req-payment-methods-post', 'POST', '/rest/v1/payment_methods');
-- users no longer insert payment methods: the payment-methods function saves it, as
-- payment_service, in hana's own request
select set_config('role', 'payment_service', true), set_config(
  'fixture.actor',
  (current_setting('fixture.actor')::jsonb || '{"db_role": "payment_service"}')::text,
  true
);
with added as (
  insert into public.payment_methods (
    type, processor_payment_method_id_sealed, processor_payment_method_id_lookup, processor_customer_id_lookup, brand, last4, nickname
  )
  values ('credit_card', tests.sealed_token(), tests.token_lookup('pm_HanaSecret01'), tests.token_lookup('cus_HanaSecret01'), 'visa', '4242', 'Everyday')
  returning id
)
select set_config('fixture.payment_method', id::text, true) from added;
reset role;
select is(
  tests.audited(null, null, '{nickname,processor_payment_method_id_lookup,processor_customer_id_lookup}'),
  tests.expected('INSERT', 'payment_methods', current_setting('fixture.payment_method'), null,
    ('{"processor_payment_method_id_lookup": "[redacted]", "processor_customer_id_lookup": "[redacted]"}'::jsonb || jsonb_build_object('nickname', tests.fingerprint('hana', 'nickname', 'Everyday')))),
  'adding a payment method leaves one audit row: an INSERT with the processor''s ids redacted'
);

select tests.begin_request('hana', 'req-payment-methods-patch', 'PATCH', '/rest/v1/payment_methods');
update public.payment_methods set nickname = 'Groceries'
where id = current_setting('fixture.payment_method')::uuid;
reset role;
select is(
  tests.audited(null, null, '{nickname,processor_payment_method_id_lookup,processor_customer_id_lookup}'),
  tests.expected('UPDATE', 'payment_methods', current_setting('fixture.payment_method'),
    ('{"processor_payment_method_id_lookup": "[redacted]", "processor_customer_id_lookup": "[redacted]"}'::jsonb || jsonb_build_object('nickname', tests.fingerprint('hana', 'nickname', 'Everyday'))),
    ('{"processor_payment_method_id_lookup": "[redacted]", "processor_customer_id_lookup": "[redacted]"}'::jsonb || jsonb_build_object('nickname', tests.fingerprint('hana', 'nickname', 'Groceries')))),
  'renaming a payment method leaves one audit row: an UPDATE, redacted in the old and the new values'
);

select tests.begin_request('hana', 'req-payment-methods-delete', 'DELETE', '/rest/v1/payment_methods');
delete from public.payment_methods where id = current_setting('fixture.payment_method')::uuid;
reset role;
select is(
  tests.audited(null, null, '{nickname,processor_payment_method_id_lookup,processor_customer_id_lookup}'),
  tests.expected('DELETE', 'payment_methods', current_setting('fixture.payment_method'),
    ('{"processor_payment_method_id_lookup": "[redacted]", "processor_customer_id_lookup": "[redacted]"}'::jsonb || jsonb_build_object('nickname', tests.fingerprint('hana', 'nickname', 'Groceries'))),
    null),
  'deleting a payment method leaves one audit row: a DELETE, redacted in the old values'
);
select is(
  (select count(*)::int from public.payment_audit_logs as l where strpos(l::text, 'HanaSecret') > 0),
  0,
  'the payment method''s processor ids appear in no audit row'
);

-- public.payout_methods: the connected account and the external account are redacted ----------

-- carl's connected account, recorded at onboarding
reset role;
insert into public.processor_accounts (processor_account_id_sealed, processor_account_id_lookup, user_id)
values (tests.sealed_token(), tests.token_lookup('acct_CarlSecret01'), tests.get_supabase_uid('carl'));
-- added by the payout-methods function: payment_service, in carl's request
select tests.begin_request(
  'carl', 'req-payout-methods-post', 'POST', '/functions/v1/payout-methods'
);
select set_config('role', 'payment_service', true);
select set_config(
  'fixture.actor',
  (current_setting('fixture.actor')::jsonb || '{"db_role": "payment_service"}')::text, true
);
with added as (
  insert into public.payout_methods (
    type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, bank_name, last4, currency,
    nickname
  )
  values ('bank_account', tests.token_lookup('acct_CarlSecret01'), tests.sealed_token(), tests.token_lookup('ba_CarlSecret01'), 'First Bank', '6789', 'USD', 'Savings')
  returning id
)
select set_config('fixture.payout_method', id::text, true) from added;
reset role;
select is(
  tests.audited(null, null, '{nickname,processor_account_id_lookup,processor_external_account_id_lookup}'),
  tests.expected('INSERT', 'payout_methods', current_setting('fixture.payout_method'), null,
    ('{"processor_account_id_lookup": "[redacted]", "processor_external_account_id_lookup": "[redacted]"}'::jsonb || jsonb_build_object('nickname', tests.fingerprint('carl', 'nickname', 'Savings')))),
  'adding a payout method leaves one audit row: an INSERT in carl''s request, from x-real-ip, with the accounts redacted'
);

select tests.begin_request('carl', 'req-payout-methods-patch', 'PATCH', '/rest/v1/payout_methods');
update public.payout_methods set nickname = 'Rainy day'
where id = current_setting('fixture.payout_method')::uuid;
reset role;
select is(
  tests.audited(null, null, '{nickname,processor_account_id_lookup,processor_external_account_id_lookup}'),
  tests.expected('UPDATE', 'payout_methods', current_setting('fixture.payout_method'),
    ('{"processor_account_id_lookup": "[redacted]", "processor_external_account_id_lookup": "[redacted]"}'::jsonb || jsonb_build_object('nickname', tests.fingerprint('carl', 'nickname', 'Savings'))),
    ('{"processor_account_id_lookup": "[redacted]", "processor_external_account_id_lookup": "[redacted]"}'::jsonb || jsonb_build_object('nickname', tests.fingerprint('carl', 'nickname', 'Rainy day')))),
  'renaming a payout method leaves one audit row: an UPDATE, redacted in the old and the new values'
);

-- a payout redirected to another bank account: never by its lookup, and a changed sealed value
-- shows as a changed fingerprint
select tests.begin_owner_change();
select throws_ok(
  format(
    $$update public.payout_methods
      set processor_external_account_id_lookup = tests.token_lookup('ba_CarlSecret02')
      where id = %L$$,
    current_setting('fixture.payout_method')
  ),
  'PT409', null,
  'a payout method is never repointed at another external account, not even by the table''s owner'
);
update public.payout_methods set processor_external_account_id_sealed = tests.sealed_token()
where id = current_setting('fixture.payout_method')::uuid;
select ok(
  (select l.old_values ->> 'processor_external_account_id_sealed'
      <> l.new_values ->> 'processor_external_account_id_sealed'
      and l.old_values ->> 'processor_external_account_id_sealed' ~ '^\[redacted [0-9a-f]{16}\]$'
      and l.new_values ->> 'processor_external_account_id_sealed' ~ '^\[redacted [0-9a-f]{16}\]$'
    from public.payment_audit_logs as l where l.seq > current_setting('fixture.mark')::bigint),
  'a sealed token that changes keeps a fingerprint of each value, so a redirection shows'
);

select tests.begin_request('carl', 'req-payout-methods-delete', 'DELETE', '/rest/v1/payout_methods');
delete from public.payout_methods where id = current_setting('fixture.payout_method')::uuid;
reset role;
select is(
  tests.audited(null, null, '{nickname,processor_account_id_lookup,processor_external_account_id_lookup}'),
  tests.expected('DELETE', 'payout_methods', current_setting('fixture.payout_method'),
    ('{"processor_account_id_lookup": "[redacted]", "processor_external_account_id_lookup": "[redacted]"}'::jsonb || jsonb_build_object('nickname', tests.fingerprint('carl', 'nickname', 'Rainy day'))),
    null),
  'deleting a payout method leaves one audit row: a DELETE, redacted in the old values'
);
select is(
  (
    select count(*)::int from public.payment_audit_logs as l
    where strpos(l::text, 'CarlSecret') > 0 or strpos(l::text, 'CarlPayout') > 0
  ),
  0,
  'no payout method''s account ids appear in any audit row'
);

-- public.payment_transactions -----------------------------------------------------------------

select tests.begin_request('payment_service', 'req-transactions-post', 'POST', '/rest/v1/payment_transactions');
with added as (
  insert into public.payment_transactions (user_id, amount_minor, currency, description)
  values (current_setting('fixture.hana')::uuid, 2500, 'USD', 'Inspection fee')
  returning id
)
select set_config('fixture.charge', id::text, true) from added;
reset role;
select is(
  tests.audited(null, null, '{status,amount_minor}'),
  tests.expected('INSERT', 'payment_transactions', current_setting('fixture.charge'), null,
    '{"status": "pending", "amount_minor": 2500}'),
  'recording a charge leaves one audit row: an INSERT by payment_service, with no user'
);

select tests.begin_request('payment_service', 'req-transactions-patch', 'PATCH', '/rest/v1/payment_transactions');
update public.payment_transactions set status = 'succeeded', processor_transaction_id = 'ch_1Hana01'
where id = current_setting('fixture.charge')::uuid;
reset role;
select is(
  tests.audited(null, null, '{status,processor_transaction_id}'),
  tests.expected('UPDATE', 'payment_transactions', current_setting('fixture.charge'),
    '{"status": "pending", "processor_transaction_id": null}',
    '{"status": "succeeded", "processor_transaction_id": "ch_1Hana01"}'),
  'a charge succeeding leaves one audit row: an UPDATE by payment_service'
);

-- no API role may delete a transaction: the owner may, and it is audited like any change
select tests.begin_owner_change();
delete from public.payment_transactions where id = current_setting('fixture.charge')::uuid;
select is(
  tests.audited(null, null, '{status}'),
  tests.expected('DELETE', 'payment_transactions', current_setting('fixture.charge'),
    '{"status": "succeeded"}', null),
  'deleting a transaction leaves one audit row: a DELETE by postgres'
);

-- public.escrow_accounts ----------------------------------------------------------------------

-- opening an escrow account also opens its ledger account: one row for the escrow itself
select tests.begin_request('hana', 'req-escrow-post', 'POST', '/rest/v1/escrow_accounts');
with added as (
  insert into public.escrow_accounts (project_id, currency)
  values (current_setting('fixture.project')::uuid, 'USD')
  returning id
)
select set_config('fixture.escrow', id::text, true) from added;
reset role;
select is(
  tests.audited('escrow_accounts', current_setting('fixture.escrow'), '{currency,balance_minor,user_id}'),
  tests.expected('INSERT', 'escrow_accounts', current_setting('fixture.escrow'), null,
    jsonb_build_object('currency', 'USD', 'balance_minor', 0, 'user_id', current_setting('fixture.hana'))),
  'opening an escrow account leaves one audit row for it: an INSERT by its owner'
);

-- a second escrow account, in EUR, for the project: to freeze, then delete
insert into public.escrow_accounts (id, user_id, project_id, currency)
values ('30000000-0000-4000-8000-0000000000e1', tests.get_supabase_uid('hana'),
  current_setting('fixture.project')::uuid, 'EUR');
select tests.begin_request('escrow_service', 'req-escrow-patch', 'PATCH', '/rest/v1/escrow_accounts');
update public.escrow_accounts set status = 'frozen' where id = '30000000-0000-4000-8000-0000000000e1';
reset role;
select is(
  tests.audited(null, null, '{status}'),
  tests.expected('UPDATE', 'escrow_accounts', '30000000-0000-4000-8000-0000000000e1',
    '{"status": "open"}', '{"status": "frozen"}'),
  'freezing an escrow account leaves one audit row: an UPDATE by escrow_service'
);

-- refused by design: an escrow account's ledger account depends on it, and the refused
-- delete leaves no audit row
select tests.begin_owner_change();
select throws_ok(
  $$delete from public.escrow_accounts where id = '30000000-0000-4000-8000-0000000000e1'$$,
  '23503',
  'update or delete on table "escrow_accounts" violates foreign key constraint "ledger_accounts_escrow_account_id_fkey" on table "ledger_accounts"',
  'an escrow account with its ledger account cannot be deleted'
);
select is(tests.audit_rows_since_mark(), 0, 'and the refused delete leaves no audit row');

-- private.ledger_accounts: the delete of the EUR escrow's ledger account (it has no entries)
select tests.begin_owner_change();
select set_config(
  'fixture.escrow_ledger_account',
  private.ledger_escrow_account('30000000-0000-4000-8000-0000000000e1')::text,
  true
);
delete from private.ledger_accounts where escrow_account_id = '30000000-0000-4000-8000-0000000000e1';
select is(
  tests.audited(null, null, '{kind,escrow_account_id}'),
  tests.expected('DELETE', 'ledger_accounts', current_setting('fixture.escrow_ledger_account'),
    '{"kind": "escrow", "escrow_account_id": "30000000-0000-4000-8000-0000000000e1"}', null),
  'deleting a ledger account with no entries leaves one audit row: a DELETE'
);

select tests.begin_owner_change();
delete from public.escrow_accounts where id = '30000000-0000-4000-8000-0000000000e1';
select is(
  tests.audited(null, null, '{currency,status}'),
  tests.expected('DELETE', 'escrow_accounts', '30000000-0000-4000-8000-0000000000e1',
    '{"currency": "EUR", "status": "frozen"}', null),
  'deleting an escrow account that nothing depends on any more leaves one audit row: a DELETE'
);

-- public.milestone_payments -------------------------------------------------------------------

select tests.begin_request('hana', 'req-milestone-payments-post', 'POST', '/rest/v1/milestone_payments');
with added as (
  insert into public.milestone_payments (milestone_id)
  values (current_setting('fixture.milestone')::uuid)
  returning id
)
select set_config('fixture.payment', id::text, true) from added;
reset role;
select is(
  tests.audited('milestone_payments', current_setting('fixture.payment'), '{status,payee_id,amount_minor,escrow_account_id}'),
  tests.expected('INSERT', 'milestone_payments', current_setting('fixture.payment'), null,
    jsonb_build_object(
      'status', 'pending', 'payee_id', current_setting('fixture.carl'), 'amount_minor', 40000,
      'escrow_account_id', current_setting('fixture.escrow')
    )),
  'paying a milestone leaves one audit row for the payment: an INSERT with what was derived'
);

-- funding moves money: the payment, the ledger and the escrow balance each get their rows
select tests.begin_request('payment_service', 'req-milestone-payments-fund', 'PATCH', '/rest/v1/milestone_payments');
update public.milestone_payments set status = 'funded', processor_payment_intent_id = 'pi_1Hana01'
where id = current_setting('fixture.payment')::uuid;
reset role;
select is(
  tests.audited('milestone_payments', current_setting('fixture.payment'), '{status,processor_payment_intent_id}'),
  tests.expected('UPDATE', 'milestone_payments', current_setting('fixture.payment'),
    '{"status": "pending", "processor_payment_intent_id": null}',
    '{"status": "funded", "processor_payment_intent_id": "pi_1Hana01"}'),
  'funding a payment leaves one audit row for it: an UPDATE by payment_service'
);
select is(
  tests.audited('escrow_accounts', current_setting('fixture.escrow'), '{balance_minor}'),
  tests.expected('UPDATE', 'escrow_accounts', current_setting('fixture.escrow'),
    '{"balance_minor": 0}', '{"balance_minor": 40000}'),
  'and one for the escrow balance it raised, by the same request'
);

-- a payment of the second milestone, as postgres, to delete
insert into public.milestone_payments (id, milestone_id, payer_id)
values ('40000000-0000-4000-8000-0000000000d2', '20000000-0000-4000-8000-000000000002',
  tests.get_supabase_uid('hana'));
-- refused by design: the parties' notifications of a payment depend on it
select tests.begin_owner_change();
select throws_ok(
  $$delete from public.milestone_payments where id = '40000000-0000-4000-8000-0000000000d2'$$,
  '23503',
  'update or delete on table "milestone_payments" violates foreign key constraint "notifications_milestone_payment_id_fkey" on table "notifications"',
  'a milestone payment that its parties were notified of cannot be deleted'
);
select is(tests.audit_rows_since_mark(), 0, 'and the refused delete leaves no audit row');
-- without them (notifications are not audited), it can
delete from public.notifications where milestone_payment_id = '40000000-0000-4000-8000-0000000000d2';
select tests.begin_owner_change();
delete from public.milestone_payments where id = '40000000-0000-4000-8000-0000000000d2';
select is(
  tests.audited(null, null, '{status,amount_minor}'),
  tests.expected('DELETE', 'milestone_payments', '40000000-0000-4000-8000-0000000000d2',
    '{"status": "pending", "amount_minor": 30000}', null),
  'deleting a milestone payment that nothing depends on leaves one audit row: a DELETE'
);

-- public.disputes -----------------------------------------------------------------------------

-- opening a dispute also puts the payment in dispute: one row for the dispute itself
select tests.begin_request('hana', 'req-disputes-post', 'POST', '/rest/v1/disputes');
with added as (
  insert into public.disputes (milestone_payment_id, reason)
  values (current_setting('fixture.payment')::uuid, 'The cabinets are the wrong colour')
  returning id
)
select set_config('fixture.dispute', id::text, true) from added;
reset role;
select is(
  tests.audited('disputes', current_setting('fixture.dispute'), '{status,reason}'),
  tests.expected('INSERT', 'disputes', current_setting('fixture.dispute'), null,
    '{"status": "open", "reason": "The cabinets are the wrong colour"}'),
  'opening a dispute leaves one audit row for it: an INSERT by the payer'
);
select is(
  tests.audited('milestone_payments', current_setting('fixture.payment'), '{status}'),
  tests.expected('UPDATE', 'milestone_payments', current_setting('fixture.payment'),
    '{"status": "funded"}', '{"status": "disputed"}'),
  'and one for the payment it put in dispute, by the same request'
);

select tests.begin_request('ada', 'req-disputes-patch', 'PATCH', '/rest/v1/disputes');
update public.disputes set resolution = 'Asked both parties for photos'
where id = current_setting('fixture.dispute')::uuid;
reset role;
select is(
  tests.audited(null, null, '{resolution}'),
  tests.expected('UPDATE', 'disputes', current_setting('fixture.dispute'),
    '{"resolution": null}', '{"resolution": "Asked both parties for photos"}'),
  'an admin''s note on a dispute leaves one audit row: an UPDATE by ada, as admin'
);

select tests.begin_owner_change();
delete from public.disputes where id = current_setting('fixture.dispute')::uuid;
select is(
  tests.audited(null, null, '{reason}'),
  tests.expected('DELETE', 'disputes', current_setting('fixture.dispute'),
    '{"reason": "The cabinets are the wrong colour"}', null),
  'deleting a dispute leaves one audit row: a DELETE'
);

-- private.ledger_accounts, ledger_transfers and ledger_entries --------------------------------

-- carl's wallet was opened when his payment was funded; abe has none yet
select tests.begin_owner_change();
select set_config('fixture.new_wallet', private.ledger_wallet(tests.get_supabase_uid('abe'), 'USD')::text, true);
select is(
  tests.audited(null, null, '{kind,user_id,debits_must_not_exceed_credits}'),
  tests.expected('INSERT', 'ledger_accounts', current_setting('fixture.new_wallet'), null,
    jsonb_build_object('kind', 'user_wallet', 'user_id', tests.get_supabase_uid('abe'),
      'debits_must_not_exceed_credits', true)),
  'opening a wallet leaves one audit row: an INSERT of the ledger account'
);
select set_config('fixture.wallet', private.ledger_wallet(tests.get_supabase_uid('carl'), 'USD')::text, true);

-- a deposit: one transfer and two entries; the wallet's entry carries its balance (clearing
-- keeps none)
select tests.begin_owner_change();
select tests.fund_wallet(tests.get_supabase_uid('carl'), 700000);
select set_config(
  'fixture.transfer',
  (
    select t.id::text from private.ledger_transfers as t
    where t.code = 'test_deposit' and t.credit_account_id = current_setting('fixture.wallet')::uuid
  ),
  true
);
select set_config(
  'fixture.debit_entry',
  (select e.id::text from private.ledger_entries as e
    where e.transfer_id = current_setting('fixture.transfer')::uuid and e.side = 'debit'),
  true
);
select set_config(
  'fixture.credit_entry',
  (select e.id::text from private.ledger_entries as e
    where e.transfer_id = current_setting('fixture.transfer')::uuid and e.side = 'credit'),
  true
);
select is(
  tests.audited('ledger_transfers', null, '{code,amount}'),
  tests.expected('INSERT', 'ledger_transfers', current_setting('fixture.transfer'), null,
    '{"code": "test_deposit", "amount": 700000}'),
  'a deposit leaves one audit row for its transfer: an INSERT'
);
select is(
  tests.audited('ledger_entries', current_setting('fixture.debit_entry'), '{side,amount}'),
  tests.expected('INSERT', 'ledger_entries', current_setting('fixture.debit_entry'), null,
    '{"side": "debit", "amount": 700000}'),
  'one for its debit entry, keyed by the entry''s number'
);
select is(
  tests.audited('ledger_entries', current_setting('fixture.credit_entry'),
    '{side,amount,account_version,account_credits_posted}'),
  tests.expected('INSERT', 'ledger_entries', current_setting('fixture.credit_entry'), null,
    '{"side": "credit", "amount": 700000, "account_version": 1, "account_credits_posted": 700000}'),
  'one for its credit entry, with the wallet''s balance after it'
);
select is(
  (select count(*)::int from public.payment_audit_logs as l
    where l.seq > current_setting('fixture.mark')::bigint and l.entity_type = 'ledger_entries'),
  2,
  'and no other entry row'
);
select is(
  (select count(*)::int from public.payment_audit_logs as l
    where l.seq > current_setting('fixture.mark')::bigint and l.entity_type = 'ledger_accounts'),
  0,
  'and none for the wallet''s row, which a transfer does not change'
);

-- an account's row changed all the same (by the owner: no function does)
select set_config(
  'fixture.wallet_opened',
  (select to_jsonb(a.created_at)::text from private.ledger_accounts as a
    where a.id = current_setting('fixture.wallet')::uuid),
  true
);
select tests.begin_owner_change();
update private.ledger_accounts set created_at = '2026-01-02T03:04:05Z'
where id = current_setting('fixture.wallet')::uuid;
select is(
  tests.audited('ledger_accounts', current_setting('fixture.wallet'), '{created_at}'),
  tests.expected('UPDATE', 'ledger_accounts', current_setting('fixture.wallet'),
    jsonb_build_object('created_at', current_setting('fixture.wallet_opened')::jsonb),
    '{"created_at": "2026-01-02T03:04:05+00:00"}'),
  'changing a ledger account''s row leaves one audit row: an UPDATE'
);

-- refused by design: transfers and entries are immutable, even for the owner, and the
-- refusals leave no audit row
select tests.begin_owner_change();
select throws_ok(
  format($$update private.ledger_transfers set amount = 1 where id = %L$$, current_setting('fixture.transfer')),
  'PT409', 'ledger_transfers are immutable: post a correcting transfer instead',
  'a ledger transfer cannot be updated'
);
select is(tests.audit_rows_since_mark(), 0, 'and the refused update leaves no audit row');
select tests.begin_owner_change();
select throws_ok(
  format($$delete from private.ledger_transfers where id = %L$$, current_setting('fixture.transfer')),
  'PT409', 'ledger_transfers are immutable: post a correcting transfer instead',
  'a ledger transfer cannot be deleted'
);
select is(tests.audit_rows_since_mark(), 0, 'and the refused delete leaves no audit row');
select tests.begin_owner_change();
select throws_ok(
  format($$update private.ledger_entries set amount = 1 where id = %s$$, current_setting('fixture.credit_entry')),
  'PT409', 'ledger_entries are immutable: post a correcting transfer instead',
  'a ledger entry cannot be updated'
);
select is(tests.audit_rows_since_mark(), 0, 'and the refused update leaves no audit row');
select tests.begin_owner_change();
select throws_ok(
  format($$delete from private.ledger_entries where id = %s$$, current_setting('fixture.credit_entry')),
  'PT409', 'ledger_entries are immutable: post a correcting transfer instead',
  'a ledger entry cannot be deleted'
);
select is(tests.audit_rows_since_mark(), 0, 'and the refused delete leaves no audit row');

-- public.withdrawals and public.withdrawal_approvals ------------------------------------------

-- a request reserves money in the ledger: one row for the withdrawal itself
select tests.begin_request('carl', 'req-withdrawals-post', 'POST', '/rest/v1/withdrawals');
with added as (
  insert into public.withdrawals (payout_method_id, amount_minor, currency)
  values ('50000000-0000-4000-8000-000000000001', 100000, 'USD')
  returning id
)
select set_config('fixture.withdrawal', id::text, true) from added;
reset role;
select is(
  tests.audited('withdrawals', current_setting('fixture.withdrawal'), '{status,amount_minor}'),
  tests.expected('INSERT', 'withdrawals', current_setting('fixture.withdrawal'), null,
    '{"status": "approved", "amount_minor": 100000}'),
  'requesting a withdrawal leaves one audit row for it: an INSERT by carl'
);

select tests.begin_request('payment_service', 'req-withdrawals-patch', 'PATCH', '/rest/v1/withdrawals');
update public.withdrawals set status = 'processing' where id = current_setting('fixture.withdrawal')::uuid;
reset role;
select is(
  tests.audited(null, null, '{status}'),
  tests.expected('UPDATE', 'withdrawals', current_setting('fixture.withdrawal'),
    '{"status": "approved"}', '{"status": "processing"}'),
  'sending the payout leaves one audit row: an UPDATE by payment_service'
);

-- a large withdrawal, as postgres, that waits for two admins
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values ('60000000-0000-4000-8000-000000000002', tests.get_supabase_uid('carl'),
  '50000000-0000-4000-8000-000000000001', 500000, 'USD');
select tests.begin_request('ada', 'req-approvals-post', 'POST', '/rest/v1/withdrawal_approvals');
with added as (
  insert into public.withdrawal_approvals (withdrawal_id, reason)
  values ('60000000-0000-4000-8000-000000000002', 'Payout matches the released milestones')
  returning id
)
select set_config('fixture.approval', id::text, true) from added;
reset role;
select is(
  tests.audited(null, null, '{withdrawal_id,approved_by,reason}'),
  tests.expected('INSERT', 'withdrawal_approvals', current_setting('fixture.approval'), null,
    jsonb_build_object(
      'withdrawal_id', '60000000-0000-4000-8000-000000000002',
      'approved_by', current_setting('fixture.ada'),
      'reason', 'Payout matches the released milestones'
    )),
  'a first approval leaves one audit row: an INSERT by ada, with her written reason'
);

-- no API role may change an approval: the owner may, and it is audited like any change
select tests.begin_owner_change();
update public.withdrawal_approvals set approved_by = current_setting('fixture.abe')::uuid
where id = current_setting('fixture.approval')::uuid;
select is(
  tests.audited(null, null, '{approved_by}'),
  tests.expected('UPDATE', 'withdrawal_approvals', current_setting('fixture.approval'),
    jsonb_build_object('approved_by', current_setting('fixture.ada')),
    jsonb_build_object('approved_by', current_setting('fixture.abe'))),
  'changing who approved leaves one audit row: an UPDATE with both approvers'
);

select tests.begin_owner_change();
delete from public.withdrawal_approvals where id = current_setting('fixture.approval')::uuid;
select is(
  tests.audited(null, null, '{approved_by}'),
  tests.expected('DELETE', 'withdrawal_approvals', current_setting('fixture.approval'),
    jsonb_build_object('approved_by', current_setting('fixture.abe')), null),
  'deleting an approval leaves one audit row: a DELETE'
);

-- a third withdrawal, as postgres, to delete
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values ('60000000-0000-4000-8000-0000000000d3', tests.get_supabase_uid('carl'),
  '50000000-0000-4000-8000-000000000001', 50000, 'USD');
-- refused by design: the owner's notification of a withdrawal depends on it
select tests.begin_owner_change();
select throws_ok(
  $$delete from public.withdrawals where id = '60000000-0000-4000-8000-0000000000d3'$$,
  '23503',
  'update or delete on table "withdrawals" violates foreign key constraint "notifications_withdrawal_id_fkey" on table "notifications"',
  'a withdrawal that its owner was notified of cannot be deleted'
);
select is(tests.audit_rows_since_mark(), 0, 'and the refused delete leaves no audit row');
delete from public.notifications where withdrawal_id = '60000000-0000-4000-8000-0000000000d3';
select tests.begin_owner_change();
delete from public.withdrawals where id = '60000000-0000-4000-8000-0000000000d3';
select is(
  tests.audited(null, null, '{amount_minor}'),
  tests.expected('DELETE', 'withdrawals', '60000000-0000-4000-8000-0000000000d3',
    '{"amount_minor": 50000}', null),
  'deleting a withdrawal that nothing depends on leaves one audit row: a DELETE'
);

-- public.subscriptions ------------------------------------------------------------------------

select tests.begin_request('payment_service', 'req-subscriptions-post', 'POST', '/rest/v1/subscriptions');
with added as (
  insert into public.subscriptions (
    user_id, plan, status, processor_subscription_id, amount_minor, currency
  )
  values (current_setting('fixture.hana')::uuid, 'pro', 'trialing', 'sub_1Hana01', 1500, 'USD')
  returning id
)
select set_config('fixture.subscription', id::text, true) from added;
reset role;
select is(
  tests.audited(null, null, '{plan,status}'),
  tests.expected('INSERT', 'subscriptions', current_setting('fixture.subscription'), null,
    '{"plan": "pro", "status": "trialing"}'),
  'a new subscription leaves one audit row: an INSERT by payment_service'
);

select tests.begin_request('payment_service', 'req-subscriptions-patch', 'PATCH', '/rest/v1/subscriptions');
update public.subscriptions set status = 'active' where id = current_setting('fixture.subscription')::uuid;
reset role;
select is(
  tests.audited(null, null, '{status}'),
  tests.expected('UPDATE', 'subscriptions', current_setting('fixture.subscription'),
    '{"status": "trialing"}', '{"status": "active"}'),
  'a subscription becoming active leaves one audit row: an UPDATE'
);

select tests.begin_owner_change();
delete from public.subscriptions where id = current_setting('fixture.subscription')::uuid;
select is(
  tests.audited(null, null, '{plan}'),
  tests.expected('DELETE', 'subscriptions', current_setting('fixture.subscription'),
    '{"plan": "pro"}', null),
  'deleting a subscription leaves one audit row: a DELETE'
);

-- public.webhook_events: the processor's payload is redacted; the key is the event id ---------

select tests.begin_request('payment_service', 'req-webhooks-post', 'POST', '/rest/v1/webhook_events');
insert into public.webhook_events (id, type, payload)
values ('evt_1Audit01', 'payment_intent.succeeded',
  '{"object": "event", "data": {"object": {"client_secret": "pi_1Hana01_secret_WebhookSecret01"}}}');
reset role;
select is(
  tests.audited(null, null, '{status,payload}'),
  tests.expected('INSERT', 'webhook_events', 'evt_1Audit01', null,
    '{"status": "received", "payload": "[redacted]"}'),
  'a received webhook leaves one audit row: an INSERT keyed by the event id, its payload redacted'
);

select tests.begin_request('payment_service', 'req-webhooks-patch', 'PATCH', '/rest/v1/webhook_events');
update public.webhook_events set status = 'processed' where id = 'evt_1Audit01';
reset role;
select is(
  tests.audited(null, null, '{status,payload}'),
  tests.expected('UPDATE', 'webhook_events', 'evt_1Audit01',
    '{"status": "received", "payload": "[redacted]"}', '{"status": "processed", "payload": "[redacted]"}'),
  'handling a webhook leaves one audit row: an UPDATE, redacted in the old and the new values'
);

-- refused by design: an audited table is never truncated, and the refusal leaves no row
select tests.begin_owner_change();
select throws_ok(
  'truncate public.webhook_events',
  '42501', 'public.webhook_events is audited row by row and is never truncated',
  'webhook events cannot be truncated'
);
select is(tests.audit_rows_since_mark(), 0, 'and the refused truncate leaves no audit row');

-- the class: every table with an audit trigger refuses a truncate
select is(
  array(
    select distinct t.tgrelid::regclass::text
    from pg_catalog.pg_trigger as t
    where
      t.tgfoid in (
        'private.capture_audit_row()'::regprocedure,
        'private.capture_audit_inserts()'::regprocedure,
        'private.capture_audit_updates()'::regprocedure
      )
      and not exists (
        select from pg_catalog.pg_trigger as g
        where
          g.tgrelid = t.tgrelid
          and g.tgfoid = 'private.refuse_unaudited_truncate()'::regprocedure
      )
    order by 1
  ),
  '{}'::text [],
  'every audited table refuses a truncate'
);

select tests.begin_owner_change();
delete from public.webhook_events where id = 'evt_1Audit01';
select is(
  tests.audited(null, null, '{status,payload}'),
  tests.expected('DELETE', 'webhook_events', 'evt_1Audit01',
    '{"status": "processed", "payload": "[redacted]"}', null),
  'deleting a webhook event leaves one audit row: a DELETE, redacted in the old values'
);
select is(
  (select count(*)::int from public.payment_audit_logs as l where strpos(l::text, 'WebhookSecret01') > 0),
  0,
  'the webhook''s payload appears in no audit row'
);

-- private.fee_schedule: changed by the owner within an admin's request ------------------------

select tests.begin_request('ada', 'req-fees-insert', 'POST', '/rest/v1/rpc/set_fee', as_owner => true);
insert into private.fee_schedule (currency, rate_bps, fixed_minor) values ('CHF', 450, 30);
select is(
  tests.audited(null, null, '{rate_bps,fixed_minor}'),
  tests.expected('INSERT', 'fee_schedule', 'CHF', null, '{"rate_bps": 450, "fixed_minor": 30}'),
  'a new fee leaves one audit row keyed by its currency: the admin''s request, run as postgres'
);

select tests.begin_request('ada', 'req-fees-update', 'POST', '/rest/v1/rpc/set_fee', as_owner => true);
update private.fee_schedule set rate_bps = 400 where currency = 'CHF';
select is(
  tests.audited(null, null, '{rate_bps}'),
  tests.expected('UPDATE', 'fee_schedule', 'CHF', '{"rate_bps": 450}', '{"rate_bps": 400}'),
  'lowering a fee leaves one audit row: an UPDATE'
);

select tests.begin_request('ada', 'req-fees-delete', 'POST', '/rest/v1/rpc/set_fee', as_owner => true);
delete from private.fee_schedule where currency = 'CHF';
select is(
  tests.audited(null, null, '{rate_bps}'),
  tests.expected('DELETE', 'fee_schedule', 'CHF', '{"rate_bps": 400}', null),
  'removing a fee leaves one audit row: a DELETE'
);
reset role;

-- private.settings ----------------------------------------------------------------------------

select tests.begin_owner_change();
insert into private.settings (key, value, description)
values ('audit_test_limit', '{"per_day": 3}', 'A setting of this test');
select is(
  tests.audited(null, null, '{value}'),
  tests.expected('INSERT', 'settings', 'audit_test_limit', null, '{"value": {"per_day": 3}}'),
  'a new setting leaves one audit row keyed by its name: an INSERT'
);

select tests.begin_owner_change();
update private.settings set value = '{"per_day": 5}' where key = 'audit_test_limit';
select is(
  tests.audited(null, null, '{value}'),
  tests.expected('UPDATE', 'settings', 'audit_test_limit',
    '{"value": {"per_day": 3}}', '{"value": {"per_day": 5}}'),
  'changing a setting leaves one audit row: an UPDATE with the old and the new value'
);

select tests.begin_owner_change();
delete from private.settings where key = 'audit_test_limit';
select is(
  tests.audited(null, null, '{value}'),
  tests.expected('DELETE', 'settings', 'audit_test_limit', '{"value": {"per_day": 5}}', null),
  'removing a setting leaves one audit row: a DELETE'
);

-- an address that is not one is not recorded as the client's: the next header that holds an
-- address is, and the whole x-forwarded-for goes to metadata
select tests.mark();
select tests.authenticate_as(
  'hana', aal => 'aal2',
  headers => '{"x-forwarded-for": "10.0.0.1, not-an-ip; 1=1", "x-real-ip": "198.51.100.77"}'
);
update public.users set full_name = 'Hana K.' where id = tests.get_supabase_uid('hana');
reset role;
select results_eq(
  $$select ip_address::text, metadata ->> 'forwarded_for' from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint$$,
  $$values ('198.51.100.77', '10.0.0.1 via not-an-ip; 1=1')$$,
  'a hop that is no address where the client''s should be is kept in metadata, and the address comes from the next header'
);

-- the actor is worked out once per request, but a change to the user's role within the
-- request (here by a function that runs as its owner) shows in the audit rows that follow it
create function tests.set_app_role(user_id uuid, new_role public.app_role) returns void
language sql
security definer
as $$
  update public.users set role = new_role where id = user_id
$$;
grant execute on function tests.set_app_role(uuid, public.app_role) to authenticated;
select tests.mark();
select tests.authenticate_as('hana', aal => 'aal2');
update public.users set full_name = 'Hana Before' where id = tests.get_supabase_uid('hana');
select tests.set_app_role(tests.get_supabase_uid('hana'), 'support');
update public.users set full_name = 'Hana After' where id = tests.get_supabase_uid('hana');
reset role;
select results_eq(
  $$select new_values ->> 'full_name', user_role::text from public.payment_audit_logs
    where seq > current_setting('fixture.mark')::bigint and user_id = tests.get_supabase_uid('hana')
      and old_values ->> 'full_name' is distinct from new_values ->> 'full_name'
    order by seq$$,
  $$values (tests.fingerprint('hana', 'full_name', 'Hana Before') #>> '{}', 'homeowner'),
    (tests.fingerprint('hana', 'full_name', 'Hana After') #>> '{}', 'support')$$,
  'a role changed within the request is the role recorded from then on'
);
update public.users set role = 'homeowner' where id = tests.get_supabase_uid('hana');

select * from finish();
rollback;
