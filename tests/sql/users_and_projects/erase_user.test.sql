-- public.erase_user: only an admin at aal2 with a recent step-up erases a user, for a written
-- reason; open money is refused with what is open named and nothing changed; an erasure
-- pseudonymizes the profile, the auth account and the method nicknames, bans the account,
-- shreds the user's fingerprint key and leaves ids, amounts and the audit trail whole.
begin;
select plan(47);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: erin (to be erased: a name, a phone, a payment method, an MFA factor,
-- notifications), dave (a canceled payment: money history, none of it open), carl (a wallet
-- balance), hana (a funded payment), zoe (an admin to be erased), ada and abe (admins), aud
-- (an auditor), olga (another user)
select tests.create_supabase_user('erin', email => 'erin@example.test', metadata => '{"full_name": "Erin Example"}');
select tests.create_supabase_user('dave');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('hana');
select tests.create_supabase_user('zoe');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('abe');
select tests.create_supabase_user('aud');
select tests.create_supabase_user('olga');
update public.users set role = 'admin'
where id in (tests.get_supabase_uid('ada'), tests.get_supabase_uid('abe'), tests.get_supabase_uid('zoe'));
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');
update public.users set phone = '+14155550123' where id = tests.get_supabase_uid('erin');
select set_config('fixture.' || n, tests.get_supabase_uid(n)::text, true)
from unnest(array['erin', 'dave', 'carl', 'hana', 'zoe', 'ada', 'abe', 'aud', 'olga']) as n;
insert into public.payment_methods (
  id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup,
  processor_customer_id_lookup, brand, last4, nickname, metadata
)
values ('40000000-0000-4000-8000-0000000000e1', tests.get_supabase_uid('erin'), 'credit_card',
  tests.sealed_token(), tests.token_lookup('pm_ErinCard01'), tests.token_lookup('cus_Erin01'),
  'visa', '4242', 'Erin''s everyday card', '{"label": "Erin at home"}');
insert into auth.mfa_factors (id, user_id, friendly_name, factor_type, status, created_at, updated_at, phone)
values (gen_random_uuid(), tests.get_supabase_uid('erin'), 'Erin''s phone', 'phone', 'verified', now(), now(), '+14155550123');
-- erin asked to change her phone (not confirmed yet), and the auth server logged her sign-in
update auth.users set phone_change = '+14155550188', phone_change_token = 'tok-phone-erin',
  email_change_token_new = 'tok-email-erin'
where id = tests.get_supabase_uid('erin');
insert into auth.audit_log_entries (id, payload, created_at)
values (gen_random_uuid(), json_build_object('action', 'login', 'actor_id', tests.get_supabase_uid('erin'),
  'actor_username', 'erin@example.test'), now());
select tests.create_project_with_milestones('dave', 'carl', array[40000::bigint],
  project_id => '10000000-0000-4000-8000-000000000001', project_title => 'Dave''s deck');
select tests.set_milestone_payment_status('30000000-0000-4000-8000-000000000001', 'canceled');
select tests.create_project_with_milestones('hana', 'carl', array[50000::bigint],
  project_id => '10000000-0000-4000-8001-000000000001', project_title => 'Hana''s kitchen');
select tests.set_milestone_payment_status(tests.project_fixture_id('10000000-0000-4000-8001-000000000001', 3, 1), 'funded');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 12345);
select set_config('fixture.hana_payment',
  tests.project_fixture_id('10000000-0000-4000-8001-000000000001', 3, 1)::text, true);
select set_config('fixture.hana_escrow', (select id::text from public.escrow_accounts
  where project_id = '10000000-0000-4000-8001-000000000001'), true);
select set_config('fixture.carl_wallet', private.ledger_wallet(tests.get_supabase_uid('carl'), 'USD')::text, true);
select set_config('fixture.erin_email',
  private.audit_fingerprint(tests.get_supabase_uid('erin'), 'email', 'erin@example.test'), true);
select set_config('fixture.mark', (select coalesce(max(seq), 0) from public.payment_audit_logs)::text, true);

-- as an anonymous request, a user (the one to be erased among them) and the backend roles:
-- no privilege
select tests.clear_authentication();
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.erin')),
  '42501', 'permission denied for function erase_user',
  'anon cannot erase a user'
);
reset role;
select tests.authenticate_as('olga', aal => 'aal2');
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.erin')),
  '42501', 'permission denied for function erase_user',
  'another user cannot erase a user'
);
reset role;
select tests.authenticate_as(current_setting('fixture.erin')::uuid, aal => 'aal2');
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.erin')),
  '42501', 'permission denied for function erase_user',
  'a user cannot erase themselves through the API (an admin does, on their request)'
);
reset role;
select tests.authenticate_as('aud', aal => 'aal2', role_name => 'auditor');
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.erin')),
  '42501', 'permission denied for function erase_user',
  'an auditor cannot erase a user'
);
reset role;
select tests.authenticate_as_service('service_role');
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.erin')),
  '42501', 'permission denied for function erase_user',
  'service_role cannot erase a user'
);
reset role;
select tests.authenticate_as_service('payment_service');
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.erin')),
  '42501', 'permission denied for function erase_user',
  'payment_service cannot erase a user'
);
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.erin')),
  '42501', 'permission denied for function erase_user',
  'escrow_service cannot erase a user'
);
reset role;

-- as a user whose token says admin but whose profile does not
select tests.authenticate_as('olga', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.erin')),
  'PT403', 'only an admin may erase a user',
  'the admin database role alone is not enough: the profile must be an admin''s'
);
reset role;

-- as an admin at aal1, then at aal2 without a recent step-up
select tests.authenticate_as('abe', aal => 'aal1', role_name => 'admin');
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.erin')),
  'PT403', 'erasing a user needs multi-factor authentication (aal2)',
  'an admin at aal1 cannot erase a user'
);
reset role;
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin', amr => jsonb_build_array(
  jsonb_build_object('method', 'totp', 'timestamp', extract(epoch from now())::bigint - 86400),
  jsonb_build_object('method', 'password', 'timestamp', extract(epoch from now())::bigint - 86400)
));
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.erin')),
  'PT403', 'erasing a user needs a recent MFA step-up',
  'an admin at aal2 whose second factor is a day old cannot erase a user'
);
reset role;

-- as an admin at aal2 with a recent step-up: what is refused, and nothing changes
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.ada')),
  'PT409', format('an admin does not erase their own account (%s)', current_setting('fixture.ada')),
  'an admin cannot erase themselves'
);
select throws_ok(
  format($$select public.erase_user(%L, 'GDPR')$$, current_setting('fixture.erin')),
  'PT422', format('erasing user %s needs a written reason of 10 to 2000 characters', current_setting('fixture.erin')),
  'an erasure needs a written reason'
);
select throws_ok(
  $$select public.erase_user('00000000-0000-4000-8000-00000000dead', 'Asked for by the user, ticket 1001')$$,
  'PT404', 'no user 00000000-0000-4000-8000-00000000dead',
  'an unknown user is not found'
);
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1002')$$, current_setting('fixture.carl')),
  'PT409',
  format('user %s has open money and cannot be erased: milestone payment %s is funded; wallet %s holds 12345 USD posted and 0 USD pending',
    current_setting('fixture.carl'), current_setting('fixture.hana_payment'),
    current_setting('fixture.carl_wallet')),
  'a payee with a funded payment and a wallet balance is refused, each named'
);
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1003')$$, current_setting('fixture.hana')),
  'PT409',
  format('user %s has open money and cannot be erased: escrow account %s holds 50000 USD; milestone payment %s is funded',
    current_setting('fixture.hana'), current_setting('fixture.hana_escrow'), current_setting('fixture.hana_payment')),
  'a payer with a funded payment, held in escrow, is refused, each named'
);
reset role;
select results_eq(
  format($$select email, erased_at from public.users where id in (%L, %L) order by id$$,
    current_setting('fixture.carl'), current_setting('fixture.hana')),
  format($$select email::text, null::timestamptz from auth.users where id in (%L, %L) order by id$$,
    current_setting('fixture.carl'), current_setting('fixture.hana')),
  'a refused erasure changes nothing: the profiles keep their email and are not erased'
);
select is(
  (select count(*)::int from public.payment_audit_logs where seq > current_setting('fixture.mark')::bigint),
  0,
  'a refused erasure writes no audit row'
);

-- erin is erased, for a reason that (wrongly) holds a card number
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  public.erase_user(current_setting('fixture.erin')::uuid, 'Erasure asked by the user, card 4111 1111 1111 1111') - 'erased_at',
  jsonb_build_object(
    'user_id', current_setting('fixture.erin'), 'payment_methods', 1, 'payout_methods', 0,
    'notifications_deleted', 1, 'auth_rows_deleted', jsonb_build_object('mfa_factors', 1, 'audit_log_entries', 1),
    'fingerprint_key', 'shredded'
  ),
  'an admin at aal2 with a recent step-up erases a user and is told what was done'
);
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1001')$$, current_setting('fixture.erin')),
  'PT409', null,
  'a user is erased once'
);
select is(
  public.erase_user(current_setting('fixture.dave')::uuid, 'Erasure asked by the user, ticket 1004') ->> 'user_id',
  current_setting('fixture.dave'),
  'a user with money history, none of it open, is erased'
);
select is(
  public.erase_user(current_setting('fixture.zoe')::uuid, 'Erasure asked by the user, ticket 1005') ->> 'user_id',
  current_setting('fixture.zoe'),
  'another admin is erased'
);
reset role;

-- what the erasure left, as postgres
select results_eq(
  format($$select email, full_name, phone, erased_at is not null from public.users where id = %L$$, current_setting('fixture.erin')),
  $$values (null::text, null::text, null::text, true)$$,
  'the profile''s email, name and phone are gone, and it is marked erased'
);
select results_eq(
  format($$select email, phone, encrypted_password, raw_user_meta_data, raw_app_meta_data, banned_until
    from auth.users where id = %L$$, current_setting('fixture.erin')),
  $$values (null::varchar, null::text, ''::varchar, '{}'::jsonb, '{}'::jsonb, 'infinity'::timestamptz)$$,
  'the auth account keeps no email, phone, password or metadata, and is banned for ever'
);
select is(
  (select count(*)::int from auth.mfa_factors where user_id = current_setting('fixture.erin')::uuid),
  0,
  'the account''s MFA factors (a phone number) are deleted'
);
select results_eq(
  format($$select id, brand, last4, nickname, metadata from public.payment_methods where user_id = %L$$, current_setting('fixture.erin')),
  $$values ('40000000-0000-4000-8000-0000000000e1'::uuid, 'visa', '4242'::char(4), null::text, '{}'::jsonb)$$,
  'the payment method stays, without its nickname and metadata'
);
select is(
  (select count(*)::int from public.notifications where user_id = current_setting('fixture.erin')::uuid),
  0,
  'the user''s notifications are deleted'
);
select is(
  private.audit_fingerprint(current_setting('fixture.erin')::uuid, 'email', 'erin@example.test'),
  null,
  'the user''s fingerprint key is shredded: no value can be matched to their fingerprints'
);
select ok(
  exists (
    select from public.payment_audit_logs
    where entity_type = 'users' and entity_id = current_setting('fixture.erin')
      and new_values ->> 'email' = current_setting('fixture.erin_email')
  ),
  'the audit rows written before the erasure are untouched: they keep the email''s fingerprint'
);
select is(
  (select count(*)::int from public.payment_audit_logs
    where concat(old_values::text, new_values::text, metadata::text)
      ~* 'erin@example|Erin Example|4155550123|Erin''s|Erin at home'),
  0,
  'no audit row holds erin''s email, name, phone, card nickname or metadata in clear'
);
select results_eq(
  format($$select user_id, user_role::text, new_values ->> 'reason', success from public.payment_audit_logs
    where operation = 'ERASE' and entity_id = %L$$, current_setting('fixture.erin')),
  format($$values (%L::uuid, 'admin', '[removed: it held card data]', true)$$, current_setting('fixture.ada')),
  'the erasure is audited: who, and the reason (a card number in it removed)'
);
select results_eq(
  $$select payer_id, payee_id, amount_minor, status::text from public.milestone_payments
    where id = '30000000-0000-4000-8000-000000000001'$$,
  format($$values (%L::uuid, %L::uuid, 40000::bigint, 'canceled')$$,
    current_setting('fixture.dave'), current_setting('fixture.carl')),
  'the erased user''s payment keeps its parties'' ids and its amount'
);
select is(
  (select erased_at is not null from public.users where id = current_setting('fixture.dave')::uuid),
  true,
  'the user with money history is erased, not deleted'
);

-- an erased user cannot sign in, and holds no staff role
select is(
  public.custom_access_token_hook(jsonb_build_object(
    'user_id', current_setting('fixture.zoe'),
    'claims', jsonb_build_object('sub', current_setting('fixture.zoe'), 'role', 'authenticated'),
    'authentication_method', 'password'
  )) #>> '{claims,role}',
  'authenticated',
  'an erased admin''s token carries no staff role (the account is banned)'
);
select tests.authenticate_as(current_setting('fixture.zoe')::uuid, aal => 'aal2', role_name => 'admin');
select is(
  private.has_app_role(array['admin', 'system_admin']::public.app_role []),
  false,
  'an erased admin''s live token no longer passes as an admin'
);
select throws_ok(
  format($$select public.erase_user(%L, 'Asked for by the user, ticket 1009')$$, current_setting('fixture.olga')),
  'PT403', 'only an admin may erase a user',
  'an erased admin cannot erase anyone'
);
reset role;

-- the owner erases without a request (payguard users erase), audited as the owner
select set_config(setting, '', true)
from unnest(array['request.jwt.claims', 'request.headers', 'request.method', 'request.path']) as setting;
select is(
  private.erase_user(current_setting('fixture.olga')::uuid, 'Erasure asked by the user, ticket 1006') ->> 'user_id',
  current_setting('fixture.olga'),
  'the owner erases a user'
);
select results_eq(
  format($$select user_id, user_role::text, new_values ->> 'reason' from public.payment_audit_logs
    where operation = 'ERASE' and entity_id = %L$$, current_setting('fixture.olga')),
  $$values (null::uuid, 'postgres', 'Erasure asked by the user, ticket 1006')$$,
  'the owner''s erasure is audited with the owner''s role and the reason'
);

-- the functions' grants: the RPC to admin alone, the work to its owner alone
select ok(
  has_function_privilege('admin', 'public.erase_user(uuid, text)', 'execute'),
  'admin executes public.erase_user'
);
select results_eq(
  $$select r from unnest(array['anon', 'authenticated', 'service_role', 'payment_service',
      'escrow_service', 'auditor', 'admin']) as r
    where has_function_privilege(r, 'private.erase_user(uuid, text)', 'execute')
      or has_function_privilege(r, 'private.open_money(uuid)', 'execute')$$,
  $$select null::text where false$$,
  'no API role executes private.erase_user or private.open_money'
);
select ok(
  not has_table_privilege('admin', 'private.audit_fingerprint_keys', 'select')
    and not has_table_privilege('auditor', 'private.audit_fingerprint_keys', 'select')
    and not has_table_privilege('service_role', 'private.audit_fingerprint_keys', 'select')
    and not has_table_privilege('payment_service', 'private.audit_fingerprint_keys', 'select')
    and not has_table_privilege('authenticated', 'private.audit_fingerprint_keys', 'select'),
  'no API role reads the fingerprint keys'
);
select results_eq(
  $$select r from unnest(array['anon', 'authenticated', 'service_role', 'payment_service',
      'escrow_service', 'auditor', 'admin']) as r
    where has_function_privilege(r, 'private.audit_fingerprint(uuid, text, text)', 'execute')
      or has_function_privilege(r, 'private.audit_fingerprint_key(uuid)', 'execute')$$,
  $$select null::text where false$$,
  'no API role computes a fingerprint'
);
select is(
  (select count(*)::int from public.payment_audit_logs where operation = 'ERASE'),
  4,
  'each erasure, and only an erasure, wrote an ERASE row'
);

select is(
  (
    select (phone_change, phone_change_token, email_change_token_new)::text from auth.users
    where id = current_setting('fixture.erin')::uuid
  ),
  '("","","")',
  'her pending phone change and its tokens are emptied'
);
select is(
  (
    select count(*)::int from auth.audit_log_entries
    where payload ->> 'actor_id' = current_setting('fixture.erin')
  ),
  0,
  'and the auth server''s log entries about her are deleted'
);

-- an erased user's live token writes nothing back, and no new money names them
select tests.authenticate_as(current_setting('fixture.erin')::uuid, aal => 'aal2');
select lives_ok(
  $$update public.users set full_name = 'Erin Example', phone = '+14155550123' where id = auth.uid()$$,
  'erin''s token, issued before the erasure, may send an update'
);
reset role;
select is(
  (select (full_name, phone)::text from public.users where id = current_setting('fixture.erin')::uuid),
  '(,)',
  'but it changes nothing: an erased profile stays erased'
);
select tests.create_supabase_user('nora', metadata => '{"role": "contractor"}');
select set_config('fixture.nora', tests.get_supabase_uid('nora')::text, true);
select tests.create_project_with_milestones('hana', 'nora', array[30000::bigint],
  project_id => '10000000-0000-4000-8002-000000000001', payments => 0, escrow => false);
select private.erase_user(current_setting('fixture.nora')::uuid, 'Asked for by the user, ticket 1002');
select throws_ok(
  $$insert into public.milestone_payments (milestone_id, payer_id)
    values ('20000000-0000-4000-8002-000000000001', (select owner_id from public.projects
      where id = '10000000-0000-4000-8002-000000000001'))$$,
  'PT409', null,
  'no new milestone payment names an erased payee'
);

select * from finish();
rollback;
