-- Incident controls: an admin at aal2 suspends a user's money movement, freezes payouts or
-- funding platform-wide (with a recent step-up), and sends a notice to the users a query over
-- payments chooses; each with a written reason, recorded in the admin's name and audited.
-- Every other role is refused, and so is an admin at aal1. What each lever stops, it stops
-- whatever the path; lifting it lets the same act through.
begin;
select plan(66);

update private.settings set value = '0' where key = 'payout_method_cool_down_seconds';
update private.settings set value = '{"time_zone": "UTC", "from": 0, "to": 24}'
where key = 'business_hours';
select tests.let_roles_call_pgtap();

select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('abe');
select tests.create_supabase_user('aud');
update public.users set role = 'admin' where id in (tests.get_supabase_uid('ada'), tests.get_supabase_uid('abe'));
update public.users set role = 'auditor' where id = tests.get_supabase_uid('aud');
select set_config('fixture.carl', tests.get_supabase_uid('carl')::text, true);
select set_config('fixture.hana', tests.get_supabase_uid('hana')::text, true);
select tests.create_project_payments('hana', 'carl', 3);
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup,
  processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('c0000000-0000-4000-8000-0000000000f1', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1IncCarl'), tests.sealed_token(), tests.token_lookup('ba_1IncCarl'), 'USD');
update public.processor_accounts set processor_account_id_sealed = tests.sealed_token()
where processor_account_id_lookup = tests.token_lookup('acct_1IncCarl');
select tests.verify_connected_account('acct_1IncCarl');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 500000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values ('d0000000-0000-4000-8000-0000000000f1', tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000f1', 10000, 'USD');
insert into public.payment_methods (id, user_id, type, processor_payment_method_id_sealed,
  processor_payment_method_id_lookup, processor_customer_id_lookup)
values ('40000000-0000-4000-8000-0000000000f1', tests.get_supabase_uid('hana'), 'credit_card',
  tests.sealed_token(), tests.token_lookup('pm_IncHana01'), tests.token_lookup('cus_IncHana01'));

-- who may pull a lever: an admin at aal2, no one else
create function tests.lever_refusals(how text, role_name text, aal text) returns setof text
language plpgsql
as $$
begin
  if how = 'anon' then
    perform tests.clear_authentication();
  elsif how = 'service' then
    perform tests.authenticate_as_service(role_name);
  else
    perform tests.authenticate_as(how, aal => aal, role_name => role_name);
  end if;
  return next throws_ok(
    format(
      'select public.suspend_user_payments(%L, %L)', current_setting('fixture.carl'),
      'Chargeback ring under investigation'
    ),
    case when role_name = 'admin' then 'PT403' else '42501' end, null,
    format('%s (%s, %s) cannot suspend a user''s payments', how, role_name, aal)
  );
  return next throws_ok(
    $q$select public.freeze_platform('payouts', 'Processor outage under investigation')$q$,
    case when role_name = 'admin' then 'PT403' else '42501' end, null,
    format('%s (%s, %s) cannot freeze payouts', how, role_name, aal)
  );
  return next throws_ok(
    $q$select public.notify_incident('Your payment may be delayed by an outage',
      'Processor outage on the 4th', '{funded}', now() - interval '1 day', now() + interval '1 day')$q$,
    case when role_name = 'admin' then 'PT403' else '42501' end, null,
    format('%s (%s, %s) cannot send an incident notice', how, role_name, aal)
  );
  execute 'reset role';
end
$$;
grant execute on function tests.lever_refusals(text, text, text)
to anon, authenticated, service_role, payment_service, escrow_service, admin, auditor;

select tests.lever_refusals('anon', 'anon', '');
select tests.lever_refusals('sam', 'authenticated', 'aal2');
select tests.lever_refusals('aud', 'auditor', 'aal2');
select tests.lever_refusals('service', 'payment_service', '');
select tests.lever_refusals('service', 'service_role', '');
select tests.lever_refusals('ada', 'admin', 'aal1');

-- an admin at aal2 suspends carl, with a written reason
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format('select public.suspend_user_payments(%L, %L)', current_setting('fixture.carl'), '...'),
  'PT422', 'an incident control needs a written reason of 10 to 2000 characters',
  'a suspension needs a written reason'
);
select lives_ok(
  format(
    'select public.suspend_user_payments(%L, %L)', current_setting('fixture.carl'),
    'Payout account matches a reported takeover'
  ),
  'an admin at aal2 suspends carl''s payments'
);
select throws_ok(
  format(
    'select public.suspend_user_payments(%L, %L)', current_setting('fixture.carl'),
    'Payout account matches a reported takeover'
  ),
  'PT409', null,
  'a user is suspended once at a time'
);
reset role;
select is(
  (select suspended_by from public.payment_suspensions where user_id = tests.get_supabase_uid('carl')),
  tests.get_supabase_uid('ada'),
  'the suspension is recorded in the admin''s name'
);
select is(
  (
    select count(*)::int from public.payment_audit_logs
    where entity_type = 'payment_suspensions' and operation = 'INSERT'
      and user_id = tests.get_supabase_uid('ada')
  ),
  1,
  'and audited'
);

-- what it stops: carl's withdrawals, and his payouts
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('c0000000-0000-4000-8000-0000000000f1', 1000, 'USD')$$,
  'PT403', format('the payments of user %s are suspended', current_setting('fixture.carl')),
  'a suspended user requests no withdrawal'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select count(*)::int from public.withdrawals_to_pay_out()),
  0,
  'nothing is paid out to a suspended user'
);
select throws_ok(
  $$select public.begin_withdrawal_step('d0000000-0000-4000-8000-0000000000f1', 'transfer')$$,
  'PT403', format('the payments of user %s are suspended', current_setting('fixture.carl')),
  'nor does payment_service start a payout step for him by naming the withdrawal'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format(
    'select public.lift_payment_suspension(%L, %L)', current_setting('fixture.carl'),
    'I am an admin too and I lift my own'
  ),
  'PT403', 'no admin suspends their own payments, or lifts their own suspension',
  'a suspended user who holds an admin token cannot lift his own suspension'
);
reset role;

-- a suspended payer funds and releases nothing
update private.settings set value = '0' where key = 'escrow_hold_seconds';
select tests.set_milestone_payment_status('30000000-0000-4000-8000-000000000001', 'funded');
select tests.submit_milestone('20000000-0000-4000-8000-000000000001');
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select lives_ok(
  format(
    'select public.suspend_user_payments(%L, %L)', current_setting('fixture.hana'),
    'Card testing seen from her account'
  ),
  'an admin suspends hana''s payments too'
);
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok(
  $$select tests.raise_if_refused(public.begin_funding_attempt(
    '30000000-0000-4000-8000-000000000002', '40000000-0000-4000-8000-0000000000f1'))$$,
  'PT403', null,
  'a suspended payer begins no funding'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-4000-8000-000000000001'$$,
  'PT403', format('the payments of user %s are suspended', current_setting('fixture.hana')),
  'nor releases a payment, even straight through the table'
);
select throws_ok(
  $$insert into public.milestone_payments (milestone_id)
    values ('20000000-0000-4000-8000-000000000003')$$,
  'PT403', format('the payments of user %s are suspended', current_setting('fixture.hana')),
  'nor creates a payment'
);
select throws_ok(
  $$insert into public.payment_transactions (payment_method_id, amount_minor, currency)
    values ('40000000-0000-4000-8000-0000000000f1', 5000, 'USD')$$,
  'PT403', format('the payments of user %s are suspended', current_setting('fixture.hana')),
  'nor starts a charge of her own'
);
reset role;
-- her payee cannot release it either, nor the scheduler of lapsed reviews
update private.settings set value = '0' where key = 'milestone_review_window_seconds';
update private.settings set value = 'true' where key = 'milestone_review_auto_release';
select tests.set_milestone_payment_status('30000000-0000-4000-8000-000000000002', 'funded');
select tests.submit_milestone('20000000-0000-4000-8000-000000000002');
select is(
  (select released from private.release_lapsed_reviews()),
  0,
  'the scheduler releases no payment of a suspended payer'
);
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$select tests.raise_if_refused(public.release_lapsed_milestone_payment(
    '30000000-0000-4000-8000-000000000002', 'carl-release-1'))$$,
  'PT403', null,
  'nor does her payee, after the review lapsed'
);
reset role;
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-4000-8000-000000000002'),
  'funded',
  'the payment stays in escrow'
);
update private.settings set value = 'false' where key = 'milestone_review_auto_release';
select tests.authenticate_as('hana', aal => 'aal2');
reset role;

-- a record is made once and lifted once, by an admin, with a reason
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select throws_ok(
  format(
    $$update public.payment_suspensions set reason = 'Something else entirely, later'
      where user_id = %L$$, current_setting('fixture.hana')
  ),
  '42501', 'permission denied for table payment_suspensions',
  'a suspension''s reason never changes: an admin may write only a lifting reason'
);
select throws_ok(
  format('select public.lift_payment_suspension(%L, %L)', current_setting('fixture.hana'), 'ok'),
  'PT422', null,
  'lifting needs a written reason too'
);
select lives_ok(
  format(
    'select public.lift_payment_suspension(%L, %L)', current_setting('fixture.hana'),
    'Her bank confirmed the cards are hers'
  ),
  'another admin lifts hana''s suspension'
);
select throws_ok(
  format(
    'select public.lift_payment_suspension(%L, %L)', current_setting('fixture.hana'),
    'Her bank confirmed the cards are hers'
  ),
  'PT404', null,
  'what is lifted is not lifted again'
);
select throws_ok(
  format(
    $$update public.payment_suspensions set lift_reason = 'Rewritten after the fact, quietly'
      where user_id = %L$$, current_setting('fixture.hana')
  ),
  'PT409', null,
  'nor is its lifting rewritten'
);
reset role;
select is(
  (
    select (lifted_by, lift_reason)::text from public.payment_suspensions
    where user_id = tests.get_supabase_uid('hana')
  ),
  format('(%s,"Her bank confirmed the cards are hers")', tests.get_supabase_uid('abe')),
  'the lifting is recorded in its admin''s name'
);
select tests.authenticate_as('hana', aal => 'aal2');
select lives_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-4000-8000-000000000001'$$,
  'lifted, hana releases the payment'
);
reset role;

-- a payout freeze needs a recent step-up; it stops every payout, and lifting it resumes them
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select lives_ok(
  format(
    'select public.lift_payment_suspension(%L, %L)', current_setting('fixture.carl'),
    'The takeover report was a mistake'
  ),
  'carl''s suspension is lifted'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select array_agg(withdrawal_id) from public.withdrawals_to_pay_out()),
  array['d0000000-0000-4000-8000-0000000000f1'::uuid],
  'carl''s withdrawal is due again'
);
reset role;
select tests.authenticate_as(
  'ada', aal => 'aal2', role_name => 'admin',
  amr => jsonb_build_array(jsonb_build_object(
    'method', 'totp', 'timestamp', extract(epoch from now())::bigint - 3600
  ))
);
select throws_ok(
  $$select public.freeze_platform('payouts', 'Processor outage under investigation')$$,
  'PT403', 'a staff member''s change to platform_freezes needs a recent MFA step-up',
  'a freeze with a step-up an hour old is refused'
);
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select public.freeze_platform('refunds', 'Processor outage under investigation')$$,
  'PT422', 'a freeze stops payouts or funding, not refunds',
  'a freeze stops payouts or funding'
);
select lives_ok(
  $$select public.freeze_platform('payouts', 'Processor outage under investigation')$$,
  'with a fresh step-up, an admin freezes payouts'
);
select throws_ok(
  $$select public.freeze_platform('payouts', 'Processor outage under investigation')$$,
  'PT409', 'payouts are frozen already',
  'payouts are frozen once at a time'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select count(*)::int from public.withdrawals_to_pay_out()), 0,
  'while payouts are frozen, none is due'
);
select throws_ok(
  $$select public.begin_withdrawal_step('d0000000-0000-4000-8000-0000000000f1', 'transfer')$$,
  'PT503', 'payouts are frozen platform-wide for now',
  'and no payout step starts, even for a withdrawal named'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select lives_ok(
  $$insert into public.withdrawals (payout_method_id, amount_minor, currency)
    values ('c0000000-0000-4000-8000-0000000000f1', 1000, 'USD')$$,
  'a withdrawal may still be requested: it waits for the freeze to end'
);
reset role;
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select lives_ok(
  $$select public.lift_platform_freeze('payouts', 'The processor confirmed the outage is over')$$,
  'an admin lifts the freeze'
);
reset role;
select tests.authenticate_as_service('payment_service');
select is(
  (select count(*)::int from public.withdrawals_to_pay_out()), 2,
  'and the withdrawals are due'
);
reset role;

-- a funding freeze: no funding attempt begins
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select lives_ok(
  $$select public.freeze_platform('funding', 'Card testing wave from many accounts')$$,
  'an admin freezes funding'
);
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select throws_ok(
  $$select tests.raise_if_refused(public.begin_funding_attempt(
    '30000000-0000-4000-8000-000000000003', '40000000-0000-4000-8000-0000000000f1'))$$,
  'PT503', null,
  'while funding is frozen, no funding attempt begins'
);
select throws_ok(
  $$insert into public.payment_transactions (payment_method_id, amount_minor, currency)
    values ('40000000-0000-4000-8000-0000000000f1', 5000, 'USD')$$,
  'PT503', 'funding is frozen platform-wide for now',
  'nor does a charge a user starts'
);
reset role;
select is(
  (select count(*)::int from public.funding_attempts), 0,
  'and none was written'
);

-- a notice to the users a query over payments chooses
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  (
    select (public.notify_incident(
      'Your payment may be delayed by a processor outage', 'Processor outage on the 4th',
      '{released}', now() - interval '1 day', now() + interval '1 day', 'usd'
    )) ->> 'recipients'
  ),
  '2',
  'an admin tells the payer and payee of each released payment of the day'
);
select is(
  (
    select (public.notify_incident(
      'Your payment may be delayed by a processor outage', 'Processor outage on the 4th',
      '{released}', now() - interval '1 day', now() + interval '1 day', 'EUR'
    )) ->> 'recipients'
  ),
  '0',
  'none in another currency'
);
select throws_ok(
  $$update public.incident_notices set title = 'Something else happened to you'$$,
  '42501', null,
  'a notice never changes'
);
reset role;
select is(
  (
    select array_agg(n.user_id order by n.user_id)
    from public.notifications as n
    where n.event = 'incident.notice'
  ),
  (
    select array_agg(id order by id) from public.users
    where id in (tests.get_supabase_uid('hana'), tests.get_supabase_uid('carl'))
  ),
  'hana and carl are told, no one else'
);
select is(
  (select sent_by from public.incident_notices limit 1),
  tests.get_supabase_uid('ada'),
  'the notice is recorded in the admin''s name'
);
select is(
  (
    select array_agg(distinct entity_type::text order by entity_type::text) from public.payment_audit_logs
    where entity_type in ('payment_suspensions', 'platform_freezes', 'incident_notices')
  ),
  array['incident_notices', 'payment_suspensions', 'platform_freezes'],
  'every lever pulled is in the audit trail'
);

-- who reads the records: admins and auditors, not users
select tests.authenticate_as('aud', aal => 'aal2', role_name => 'auditor');
select is(
  (
    select array[
      (select count(*)::int from public.payment_suspensions),
      (select count(*)::int from public.platform_freezes),
      (select count(*)::int from public.incident_notices)
    ]
  ),
  array[2, 2, 2],
  'an auditor reads every suspension, freeze and notice'
);
reset role;
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  'select count(*) from public.payment_suspensions', '42501', null,
  'a user reads no suspension, not even his own'
);
select throws_ok(
  'select count(*) from public.platform_freezes', '42501', null,
  'nor the freezes'
);
reset role;

select * from finish();
rollback;
