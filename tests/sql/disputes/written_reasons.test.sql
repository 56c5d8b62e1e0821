-- A staff decision carries a written reason, kept in the audit trail: closing a dispute
-- (resolve_dispute, a PATCH of the dispute, a direct settlement of its payment) needs a
-- resolution of 10 to 5000 characters once trimmed, and approving a withdrawal a reason of
-- 10 to 2000. Blank, short or overlong ones are refused (PT422); who may act is checked
-- first.
begin;
select plan(34);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl; ada and abe are admins; no holds, no limits
update private.settings set value = '0' where key = 'escrow_hold_seconds';
update private.settings set value = (
  select jsonb_object_agg(level, jsonb_build_object('calls', 1000, 'seconds', 60))
  from unnest(array['low', 'medium', 'high']) as level
)
where key = 'velocity_limits';
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('abe');
update public.users set role = 'admin'
where id in (tests.get_supabase_uid('ada'), tests.get_supabase_uid('abe'));
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array_fill(20000::bigint, array[3]),
  project_id => '10000000-0000-0000-0000-000000000001'
);
select tests.set_milestone_payment_status(
  format('30000000-0000-0000-0000-00000000000%s', n)::uuid, 'disputed'
)
from generate_series(1, 3) as n;
alter table public.disputes disable trigger dispute_milestone_payment;
insert into public.disputes (id, milestone_payment_id, opened_by, reason)
select format('50000000-0000-0000-0000-00000000000%s', n)::uuid,
  format('30000000-0000-0000-0000-00000000000%s', n)::uuid, tests.get_supabase_uid('hana'),
  'Not as agreed'
from generate_series(1, 3) as n;
alter table public.disputes enable trigger dispute_milestone_payment;
-- carl's large withdrawal waits for two admins
insert into public.payout_methods (id, user_id, type, processor_account_id_lookup, processor_external_account_id_sealed, processor_external_account_id_lookup, currency)
values ('c0000000-0000-4000-8000-0000000000d1', tests.get_supabase_uid('carl'), 'bank_account',
  tests.token_lookup('acct_1Carl01'), tests.sealed_token(), tests.token_lookup('ba_1Carl01'), 'USD');
select tests.fund_wallet(tests.get_supabase_uid('carl'), 900000);
insert into public.withdrawals (id, user_id, payout_method_id, amount_minor, currency)
values ('d0000000-0000-4000-8000-000000000001', tests.get_supabase_uid('carl'),
  'c0000000-0000-4000-8000-0000000000d1', 600000, 'USD');

-- as ada, an admin: a dispute is closed only with a written resolution
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000001', 'release', '', 'blank-1'))$$,
  'PT422',
  'closing dispute 50000000-0000-0000-0000-000000000001 needs a written resolution of 10 to 5000 characters',
  'resolve_dispute refuses an empty resolution'
);
select throws_ok(
  format(
    $$select tests.raise_if_refused(public.resolve_dispute(
      '50000000-0000-0000-0000-000000000001', 'release', %L, 'blank-2'))$$,
    e'   \n\t   \r\n      '
  ),
  'PT422',
  'closing dispute 50000000-0000-0000-0000-000000000001 needs a written resolution of 10 to 5000 characters',
  'a resolution of white space only'
);
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000001', 'release', null, 'blank-3'))$$,
  'PT422',
  'closing dispute 50000000-0000-0000-0000-000000000001 needs a written resolution of 10 to 5000 characters',
  'no resolution at all'
);
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000001', 'release', '     Fine.       ', 'blank-4'))$$,
  'PT422',
  'closing dispute 50000000-0000-0000-0000-000000000001 needs a written resolution of 10 to 5000 characters',
  'a word padded with spaces to look long enough'
);
select throws_ok(
  format(
    $$select tests.raise_if_refused(public.resolve_dispute(
      '50000000-0000-0000-0000-000000000001', 'release', %L, 'blank-5'))$$,
    repeat('x', 5001)
  ),
  'PT422',
  'closing dispute 50000000-0000-0000-0000-000000000001 needs a written resolution of 10 to 5000 characters',
  'a resolution longer than 5000 characters'
);
select throws_ok(
  $$update public.disputes set status = 'resolved', outcome = 'refund'
    where id = '50000000-0000-0000-0000-000000000001'$$,
  'PT422',
  'closing dispute 50000000-0000-0000-0000-000000000001 needs a written resolution of 10 to 5000 characters',
  'a PATCH that resolves a dispute without a resolution'
);
select throws_ok(
  $$update public.disputes set status = 'withdrawn', resolution = ' '
    where id = '50000000-0000-0000-0000-000000000001'$$,
  'PT422',
  'closing dispute 50000000-0000-0000-0000-000000000001 needs a written resolution of 10 to 5000 characters',
  'a PATCH that withdraws a dispute with a blank resolution'
);

-- as escrow_service: settling the disputed payment directly needs the dispute's resolution
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  'PT422',
  'closing dispute 50000000-0000-0000-0000-000000000002 needs a written resolution of 10 to 5000 characters',
  'escrow_service cannot settle a disputed payment whose dispute has no written resolution'
);
reset role;
select results_eq(
  $$select d.status::text, mp.status::text from public.disputes as d
    join public.milestone_payments as mp on mp.id = d.milestone_payment_id
    where d.id in ('50000000-0000-0000-0000-000000000001', '50000000-0000-0000-0000-000000000002')
    order by d.id$$,
  $$values ('open', 'disputed'), ('open', 'disputed')$$,
  'nothing was settled: both disputes are open, both payments in dispute'
);
select is(
  (select count(*)::int from private.ledger_transfers
    where reference_id in ('30000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002')
      and code <> 'milestone_funding'),
  0,
  'and no money moved'
);

-- with a written reason, each path settles, and the audit trail keeps the reason
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000001', 'release', '  The work was inspected and is complete  ',
    'written-1'
  )) ->> 'status',
  'resolved',
  'resolve_dispute with a written resolution releases the payment'
);
reset role;
select tests.authenticate_as_service('escrow_service');
select lives_ok(
  $$update public.disputes set resolution = 'The counters were never delivered'
    where id = '50000000-0000-0000-0000-000000000002'$$,
  'escrow_service writes the resolution on the open dispute'
);
select lives_ok(
  $$update public.milestone_payments set status = 'refunded'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  'and then refunds the disputed payment directly'
);
reset role;
select results_eq(
  $$select l.entity_id, l.new_values ->> 'status', l.new_values ->> 'resolution', l.user_id
    from public.payment_audit_logs as l
    where l.entity_type = 'disputes' and l.operation = 'UPDATE'
      and l.entity_id in ('50000000-0000-0000-0000-000000000001', '50000000-0000-0000-0000-000000000002')
      and l.new_values ->> 'status' = 'resolved'
    order by l.entity_id$$,
  format(
    $$values
      ('50000000-0000-0000-0000-000000000001', 'resolved', '  The work was inspected and is complete  ', %L::uuid),
      ('50000000-0000-0000-0000-000000000002', 'resolved', 'The counters were never delivered', null)$$,
    tests.get_supabase_uid('ada')
  ),
  'the audit row of each resolution carries its written reason and who decided'
);
select results_eq(
  $$select status::text from public.milestone_payments
    where id in ('30000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002')
    order by id$$,
  $$values ('released'), ('refunded')$$,
  'the payments were settled as decided'
);

-- approvals: the owner who is an admin is refused as the owner, whatever the reason
update public.users set role = 'admin' where id = tests.get_supabase_uid('carl');
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select tests.raise_if_refused(public.approve_withdrawal(
    'd0000000-0000-4000-8000-000000000001', '', 'own-1'))$$,
  'PT403', 'no one approves their own withdrawal',
  'the owner, though an admin, is refused as the owner before his empty reason'
);
reset role;
update public.users set role = 'contractor' where id = tests.get_supabase_uid('carl');

-- as ada: an approval needs a written reason
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select tests.raise_if_refused(public.approve_withdrawal(
    'd0000000-0000-4000-8000-000000000001', '', 'approve-blank-1'))$$,
  'PT422',
  'an approval of withdrawal d0000000-0000-4000-8000-000000000001 needs a written reason of 10 to 2000 characters',
  'approve_withdrawal refuses an empty reason'
);
select throws_ok(
  format(
    $$select tests.raise_if_refused(public.approve_withdrawal(
      'd0000000-0000-4000-8000-000000000001', %L, 'approve-blank-2'))$$,
    e'\t \n   \n \t   '
  ),
  'PT422',
  'an approval of withdrawal d0000000-0000-4000-8000-000000000001 needs a written reason of 10 to 2000 characters',
  'a reason of white space only'
);
select throws_ok(
  $$select tests.raise_if_refused(public.approve_withdrawal(
    'd0000000-0000-4000-8000-000000000001', null, 'approve-blank-3'))$$,
  'PT422',
  'an approval of withdrawal d0000000-0000-4000-8000-000000000001 needs a written reason of 10 to 2000 characters',
  'no reason at all'
);
select throws_ok(
  $$select tests.raise_if_refused(public.approve_withdrawal(
    'd0000000-0000-4000-8000-000000000001', '      ok        ', 'approve-blank-4'))$$,
  'PT422',
  'an approval of withdrawal d0000000-0000-4000-8000-000000000001 needs a written reason of 10 to 2000 characters',
  'a word padded with spaces to look long enough'
);
select throws_ok(
  format(
    $$select tests.raise_if_refused(public.approve_withdrawal(
      'd0000000-0000-4000-8000-000000000001', %L, 'approve-blank-5'))$$,
    repeat('y', 2001)
  ),
  'PT422',
  'an approval of withdrawal d0000000-0000-4000-8000-000000000001 needs a written reason of 10 to 2000 characters',
  'a reason longer than 2000 characters'
);
select throws_ok(
  $$insert into public.withdrawal_approvals (withdrawal_id)
    values ('d0000000-0000-4000-8000-000000000001')$$,
  'PT422',
  'an approval of withdrawal d0000000-0000-4000-8000-000000000001 needs a written reason of 10 to 2000 characters',
  'a direct insert of an approval without a reason'
);
select throws_ok(
  $$update public.withdrawal_approvals set reason = 'Written afterwards instead'$$,
  '42501', 'permission denied for table withdrawal_approvals',
  'an admin cannot write a reason into an approval afterwards'
);
-- as PostgREST calls it: the refusal is answered, and its audit row committed
select is(
  public.approve_withdrawal('d0000000-0000-4000-8000-000000000001', '', 'approve-blank-6')
    ->> 'code',
  'PT422',
  'the refused call answers with PT422'
);
select set_config('response.status', '', true);
reset role;
select is(
  (select count(*)::int from public.withdrawal_approvals),
  0,
  'no approval was recorded'
);
select results_eq(
  $$select l.success, l.new_values ->> 'reason', l.metadata ->> 'sqlstate'
    from public.payment_audit_logs as l
    where l.operation = 'approve_withdrawal' and l.entity_id = 'd0000000-0000-4000-8000-000000000001'
      and l.user_id = tests.get_supabase_uid('ada')
    order by l.seq limit 1$$,
  $$values (false, '', 'PT422')$$,
  'the refused call is in the audit trail, with the reason it was given'
);

-- with a written reason, two admins approve it, and each reason is in the audit trail
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  tests.raise_if_refused(public.approve_withdrawal(
    'd0000000-0000-4000-8000-000000000001', 'Matches the two milestones released', 'approve-1'
  )) ->> 'reason',
  'Matches the two milestones released',
  'an admin approves with a written reason through the RPC'
);
select is(
  (select status::text from public.withdrawals where id = 'd0000000-0000-4000-8000-000000000001'),
  'requested',
  'one approval is not enough'
);
reset role;
select tests.authenticate_as('abe', aal => 'aal2', role_name => 'admin');
select lives_ok(
  $$insert into public.withdrawal_approvals (withdrawal_id, reason)
    values ('d0000000-0000-4000-8000-000000000001', 'Called the contractor to confirm the account')$$,
  'a second admin approves with a written reason by a direct insert'
);
select is(
  (select status::text from public.withdrawals where id = 'd0000000-0000-4000-8000-000000000001'),
  'approved',
  'two approvals with their reasons approve the withdrawal'
);
reset role;
select results_eq(
  $$select l.new_values ->> 'reason', l.user_id from public.payment_audit_logs as l
    where l.entity_type = 'withdrawal_approvals' and l.operation = 'INSERT'
    order by l.seq$$,
  format(
    $$values ('Matches the two milestones released', %L::uuid),
      ('Called the contractor to confirm the account', %L::uuid)$$,
    tests.get_supabase_uid('ada'), tests.get_supabase_uid('abe')
  ),
  'the audit row of each approval carries its reason and its approver'
);
select results_eq(
  $$select reason from public.withdrawal_approvals order by created_at, reason$$,
  $$values ('Called the contractor to confirm the account'), ('Matches the two milestones released')$$,
  'and so do the approvals'
);

-- the dispute left open by payment 3 is refused a blank resolution by escrow_service too
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000003', 'refund', 'no', 'escrow-blank'))$$,
  'PT422',
  'closing dispute 50000000-0000-0000-0000-000000000003 needs a written resolution of 10 to 5000 characters',
  'escrow_service cannot resolve with a blank reason either'
);
select is(
  tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000003', 'refund', 'The tiles were the wrong size', 'escrow-1'
  )) ->> 'resolution',
  'The tiles were the wrong size',
  'and resolves it with a written reason'
);

select * from finish();
rollback;
