-- Deleting a user, as Supabase's auth server does (`delete from auth.users`; here as postgres,
-- which may delete there too), works or is refused with a reason; it never fails on a foreign
-- key. A
-- user with money history is refused (PT409, hint: erase them); any other user takes with them
-- their payment methods, the projects they own, and their place as a project's contractor.
begin;
select plan(24);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: pam (a payment method), owen (a project with milestones), cody (the
-- contractor of owen's project), walt (a wallet: ledger history), pia (a canceled payment),
-- ada (an admin), sid (no data at all)
select tests.create_supabase_user('pam');
select tests.create_supabase_user('owen');
select tests.create_supabase_user('cody', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('walt', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('pia');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('sid');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
select set_config('fixture.' || n, tests.get_supabase_uid(n)::text, true)
from unnest(array['pam', 'owen', 'cody', 'walt', 'pia', 'ada', 'sid']) as n;
insert into public.payment_methods (
  id, user_id, type, processor_payment_method_id_sealed, processor_payment_method_id_lookup,
  processor_customer_id_lookup, brand, last4, nickname
)
values ('40000000-0000-4000-8000-0000000000a1', tests.get_supabase_uid('pam'), 'credit_card',
  tests.sealed_token(), tests.token_lookup('pm_PamCard01'), tests.token_lookup('cus_Pam01'),
  'visa', '4242', 'Pam''s card');
select tests.create_project_with_milestones('owen', 'cody', array[10000::bigint, 20000::bigint],
  payments => 0, escrow => false, project_id => '10000000-0000-4000-8000-000000000001',
  project_title => 'Owen''s porch');
select tests.create_project_with_milestones('pia', 'cody', array[30000::bigint],
  project_id => '10000000-0000-4000-8001-000000000001', project_title => 'Pia''s attic');
select tests.set_milestone_payment_status('30000000-0000-4000-8001-000000000001', 'canceled');
select tests.fund_wallet(tests.get_supabase_uid('walt'), 100);

/** The hint of the error `statement` raises (this file's own helper, rolled back with it). */
create function tests.error_hint(statement text) returns text
language plpgsql
as $$
declare
  hint text;
begin
  execute statement;
  return null;
exception when others then
  get stacked diagnostics hint = pg_exception_hint;
  return hint;
end
$$;

-- the API roles delete no account, and no profile but service_role
select tests.clear_authentication();
select throws_ok(
  format($$delete from auth.users where id = %L$$, current_setting('fixture.sid')),
  '42501', 'permission denied for table users',
  'anon cannot delete an account'
);
reset role;
select tests.authenticate_as('sid', aal => 'aal2');
select throws_ok(
  format($$delete from auth.users where id = %L$$, current_setting('fixture.sid')),
  '42501', 'permission denied for table users',
  'a user cannot delete their own account directly'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format($$delete from auth.users where id = %L$$, current_setting('fixture.sid')),
  '42501', 'permission denied for schema auth',
  'an admin at aal2 cannot delete an account directly'
);
select throws_ok(
  format($$delete from public.users where id = %L$$, current_setting('fixture.sid')),
  '42501', 'permission denied for table users',
  'an admin at aal2 cannot delete a profile'
);
reset role;

-- as the auth server would (the statement is the same, as postgres): a user with a payment method
select lives_ok(
  format($$delete from auth.users where id = %L$$, current_setting('fixture.pam')),
  'the auth server deletes a user who has a payment method'
);
reset role;
select is(
  (select count(*)::int from public.payment_methods where user_id = current_setting('fixture.pam')::uuid),
  0,
  'the user''s payment method goes with them'
);
select is(
  (select count(*)::int from public.notifications where user_id = current_setting('fixture.pam')::uuid),
  0,
  'no notification is left for (or written to) the deleted user'
);
select is(
  (select count(*)::int from public.payment_audit_logs
    where entity_type = 'payment_methods' and entity_id = '40000000-0000-4000-8000-0000000000a1'
      and operation = 'DELETE'),
  1,
  'the payment method''s removal is audited'
);
select is(
  (select count(*)::int from public.payment_audit_logs
    where entity_type = 'users' and entity_id = current_setting('fixture.pam') and operation = 'DELETE'),
  1,
  'the profile''s removal is audited'
);
-- the key is shredded when the transaction commits, after the cascade's audit rows: fire that now
set constraints shred_audit_fingerprint_key immediate;
select is(
  private.audit_fingerprint(current_setting('fixture.pam')::uuid, 'nickname', 'Pam''s card'),
  null,
  'the deleted user''s fingerprint key is shredded, after the audit row of their payment method'
);
set constraints shred_audit_fingerprint_key deferred;

-- a user who owns a project (with milestones, no payment), and its contractor
select lives_ok(
  format($$delete from auth.users where id = %L$$, current_setting('fixture.owen')),
  'the auth server deletes a user who owns a project'
);
reset role;
select is(
  (select count(*)::int from public.projects where id = '10000000-0000-4000-8000-000000000001'),
  0,
  'the project goes with its owner'
);
select is(
  (select count(*)::int from public.project_milestones where project_id = '10000000-0000-4000-8000-000000000001'),
  0,
  'and its milestones with it'
);

-- a user with ledger history (a wallet)
select throws_ok(
  format($$delete from auth.users where id = %L$$, current_setting('fixture.walt')),
  'PT409',
  format('user %s has money history (a wallet in the ledger) and is never deleted', current_setting('fixture.walt')),
  'the auth server cannot delete a user with a wallet: refused with the reason, not a foreign key'
);
reset role;
select is(
  (select count(*)::int from auth.users where id = current_setting('fixture.walt')::uuid),
  1,
  'the refused delete leaves the account'
);

-- a user an incident control names (a suspension of theirs), and the admin who made it
select tests.create_supabase_user('susi');
select tests.create_supabase_user('ida');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ida');
select tests.authenticate_as('ida', aal => 'aal2', role_name => 'admin');
select public.suspend_user_payments(
  tests.get_supabase_uid('susi'), 'Suspended while a takeover is checked'
);
reset role;
select throws_ok(
  format($$delete from auth.users where id = %L$$, tests.get_supabase_uid('susi')),
  'PT409',
  format('user %s has money history (incident controls) and is never deleted', tests.get_supabase_uid('susi')),
  'a suspended user is refused deletion with the reason, not a foreign key'
);
select throws_ok(
  format($$delete from auth.users where id = %L$$, tests.get_supabase_uid('ida')),
  'PT409',
  format('user %s has money history (incident controls) and is never deleted', tests.get_supabase_uid('ida')),
  'and so is the admin who suspended them'
);

-- the contractor of a project with a payment (a canceled one: history, nothing open)
select throws_ok(
  format($$delete from auth.users where id = %L$$, current_setting('fixture.cody')),
  'PT409',
  format('user %s has money history (milestone payments) and is never deleted', current_setting('fixture.cody')),
  'a payee of a payment is never deleted'
);
select throws_ok(
  format($$delete from auth.users where id = %L$$, current_setting('fixture.pia')),
  'PT409',
  format('user %s has money history (milestone payments, escrow accounts) and is never deleted', current_setting('fixture.pia')),
  'a payer with escrow is never deleted, each kind of history named'
);
reset role;
-- the refusal says what to do instead
select results_eq(
  format($$select tests.error_hint(%L)$$,
    format('delete from auth.users where id = %L', current_setting('fixture.walt'))),
  $$values ('erase the user instead: public.erase_user(user_id, reason), or `payguard users erase USER_ID --reason ...`')$$,
  'the refusal hints at erasure'
);

-- service_role deletes a profile alone: the same rule
select tests.authenticate_as_service('service_role');
select throws_ok(
  format($$delete from public.users where id = %L$$, current_setting('fixture.walt')),
  'PT409',
  format('user %s has money history (a wallet in the ledger) and is never deleted', current_setting('fixture.walt')),
  'service_role cannot delete the profile of a user with money history'
);
select lives_ok(
  format($$delete from public.users where id = %L$$, current_setting('fixture.sid')),
  'service_role deletes the profile of a user without money history'
);
reset role;

-- once erased, a user with money history is still refused deletion, and keeps their records
select private.erase_user(current_setting('fixture.pia')::uuid, 'Erasure asked by the user, ticket 2001');
select throws_ok(
  format($$delete from auth.users where id = %L$$, current_setting('fixture.pia')),
  'PT409', null,
  'an erased user with money history is not deleted either'
);
reset role;
select is(
  (select payer_id::text from public.milestone_payments where id = '30000000-0000-4000-8001-000000000001'),
  current_setting('fixture.pia'),
  'the erased payer''s payment still names them'
);

select * from finish();
rollback;
