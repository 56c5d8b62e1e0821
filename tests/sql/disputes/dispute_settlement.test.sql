-- A dispute is settled once, by exactly the decision made, and then never changes: resolving
-- it settles its payment in the same statement (the RPC or a PATCH), a split pays the share
-- of the dispute being resolved and never an earlier one's, and a closed dispute cannot be
-- edited or deleted by any role, the tables' owner included.
begin;
select plan(37);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana pays carl for a kitchen; ada is an admin; no holds, no limits
update private.settings set value = '0' where key = 'escrow_hold_seconds';
update private.settings set value = (
  select jsonb_object_agg(level, jsonb_build_object('calls', 1000, 'seconds', 60))
  from unnest(array['low', 'medium', 'high']) as level
)
where key = 'velocity_limits';
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array_fill(20000::bigint, array[6]),
  project_id => '10000000-0000-0000-0000-000000000001',
  escrow_id => '40000000-0000-0000-0000-000000000001'
);
-- payments 1 to 5 in dispute, 6 funded
select tests.set_milestone_payment_status(
  format('30000000-0000-0000-0000-00000000000%s', n)::uuid,
  case when n = 6 then 'funded' else 'disputed' end::public.milestone_payment_status
)
from generate_series(1, 6) as n;

-- payment 2 carries a stale split share: a dispute recorded as resolved with a share of 5000
-- that never settled the payment (what an edit could leave before disputes became
-- immutable), while the payment is still in dispute
alter table public.disputes disable trigger record_dispute_resolution;
alter table public.disputes disable trigger dispute_milestone_payment;
insert into public.disputes (
  id, milestone_payment_id, opened_by, reason, status, outcome, payee_share_minor, resolution,
  resolved_at
)
values ('50000000-0000-0000-0000-0000000000a2', '30000000-0000-0000-0000-000000000002',
  tests.get_supabase_uid('hana'), 'Cabinets late', 'resolved', 'split', 5000,
  'An earlier decision that moved no money', now() + interval '1 hour');
alter table public.disputes enable trigger record_dispute_resolution;
-- the open disputes that put payments 1 to 5 in dispute (the payments already are)
insert into public.disputes (id, milestone_payment_id, opened_by, reason)
select format('50000000-0000-0000-0000-00000000000%s', n)::uuid,
  format('30000000-0000-0000-0000-00000000000%s', n)::uuid, tests.get_supabase_uid('hana'),
  'Not as agreed'
from generate_series(1, 5) as n;
alter table public.disputes enable trigger dispute_milestone_payment;

-- as ada, an admin: resolving a dispute settles its payment, with exactly its share
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select is(
  tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000001', 'split', 'Half the cabinets were fitted', 'split-1',
    12000
  )) ->> 'payee_share_minor',
  '12000',
  'an admin splits payment 1: 12000 of 20000 to the payee'
);
select throws_ok(
  $$update public.milestone_payments set status = 'split'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  'PT422',
  'milestone payment 30000000-0000-0000-0000-000000000002 is split only by a dispute resolved with the payee''s share',
  'a payment is not split by a PATCH of the payment, even with a stale split share on record'
);
select set_config('payguard.settling_dispute', '50000000-0000-0000-0000-0000000000a2', true);
select throws_ok(
  $$update public.milestone_payments set status = 'split'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  'PT422',
  'milestone payment 30000000-0000-0000-0000-000000000002 is split only by a dispute resolved with the payee''s share',
  'nor by one that names the stale dispute as the one being settled'
);
select set_config('payguard.settling_dispute', '', true);
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000002', 'split', 'All of it to the payee', 'split-2a', 20000))$$,
  'PT422',
  'milestone payment 30000000-0000-0000-0000-000000000002 is split only by a dispute resolved with the payee''s share',
  'a split whose share is the whole amount is refused, not paid with the stale share'
);
select is(
  tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000002', 'split', 'Most of the cabinets were fitted',
    'split-2b', 12000
  )) ->> 'payee_share_minor',
  '12000',
  'an admin splits payment 2 with a new decision: 12000'
);
select lives_ok(
  $$update public.disputes
    set status = 'resolved', outcome = 'refund', resolution = 'Nothing was delivered on time'
    where id = '50000000-0000-0000-0000-000000000003'$$,
  'an admin resolves a dispute with a PATCH of the dispute'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000003'),
  'refunded',
  'which refunds its payment in the same statement'
);
select lives_ok(
  $$update public.disputes set resolution = 'Asked both parties for photos'
    where id = '50000000-0000-0000-0000-000000000004'$$,
  'an admin writes a note on an open dispute'
);
select lives_ok(
  $$update public.disputes
    set status = 'withdrawn', resolution = 'The payer withdrew her complaint by phone'
    where id = '50000000-0000-0000-0000-000000000005'$$,
  'an admin records a dispute as withdrawn, with its reason'
);
reset role;

-- the ledger: each split paid its own decision's share, less the fee, and the rest back
select results_eq(
  $$select mp.id::text, t.code, t.amount from private.ledger_transfers as t
    join public.milestone_payments as mp on mp.id = t.reference_id
    where mp.id in ('30000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002')
      and t.code <> 'milestone_funding'
    order by 1, 2$$,
  $$values
    ('30000000-0000-0000-0000-000000000001', 'milestone_refund', 8000::bigint),
    ('30000000-0000-0000-0000-000000000001', 'milestone_release', 11400::bigint),
    ('30000000-0000-0000-0000-000000000001', 'platform_fee', 600::bigint),
    ('30000000-0000-0000-0000-000000000002', 'milestone_refund', 8000::bigint),
    ('30000000-0000-0000-0000-000000000002', 'milestone_release', 11400::bigint),
    ('30000000-0000-0000-0000-000000000002', 'platform_fee', 600::bigint)$$,
  'both splits posted 12000 less the fee to the payee and 8000 back; the stale 5000 was never paid'
);
select results_eq(
  $$select id::text, status::text, outcome::text, payee_share_minor from public.disputes
    where milestone_payment_id = '30000000-0000-0000-0000-000000000002' order by id$$,
  $$values
    ('50000000-0000-0000-0000-000000000002', 'resolved', 'split', 12000::bigint),
    ('50000000-0000-0000-0000-0000000000a2', 'resolved', 'split', 5000::bigint)$$,
  'the decision recorded is the decision paid'
);
select results_eq(
  $$select id::text, status::text from public.milestone_payments
    where id in ('30000000-0000-0000-0000-000000000001', '30000000-0000-0000-0000-000000000002',
      '30000000-0000-0000-0000-000000000004', '30000000-0000-0000-0000-000000000005')
    order by id$$,
  $$values
    ('30000000-0000-0000-0000-000000000001', 'split'), ('30000000-0000-0000-0000-000000000002', 'split'),
    ('30000000-0000-0000-0000-000000000004', 'disputed'), ('30000000-0000-0000-0000-000000000005', 'disputed')$$,
  'the split payments are split; a note or a withdrawal moves no money'
);

-- a frozen escrow refuses the resolution whole: the dispute stays open
update public.escrow_accounts set status = 'frozen' where id = '40000000-0000-0000-0000-000000000001';
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$update public.disputes
    set status = 'resolved', outcome = 'release', resolution = 'The work is finished after all'
    where id = '50000000-0000-0000-0000-000000000004'$$,
  'PT409', 'the escrow account of milestone payment 30000000-0000-0000-0000-000000000004 is frozen',
  'a dispute is not resolved while its payment cannot be settled'
);
reset role;
update public.escrow_accounts set status = 'open' where id = '40000000-0000-0000-0000-000000000001';
select is(
  (select status::text from public.disputes where id = '50000000-0000-0000-0000-000000000004'),
  'open',
  'so the record never says what the ledger does not'
);

-- an open dispute over a payment that is not in dispute cannot be resolved (an open dispute
-- over funded payment 6, kept from moving it, as a record from before could be)
alter table public.disputes disable trigger dispute_milestone_payment;
insert into public.disputes (id, milestone_payment_id, opened_by, reason)
values ('50000000-0000-0000-0000-000000000006', '30000000-0000-0000-0000-000000000006',
  tests.get_supabase_uid('carl'), 'Paid too slowly');
alter table public.disputes enable trigger dispute_milestone_payment;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  $$update public.disputes
    set status = 'resolved', outcome = 'release', resolution = 'Nothing to decide here at all'
    where id = '50000000-0000-0000-0000-000000000006'$$,
  'PT409',
  'dispute 50000000-0000-0000-0000-000000000006 cannot be resolved: milestone payment 30000000-0000-0000-0000-000000000006 is funded, not in dispute',
  'a resolution that would settle nothing is refused'
);

-- as admin: a closed dispute never changes, whatever the column
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$update public.disputes set payee_share_minor = 19000
    where id = '50000000-0000-0000-0000-000000000001'$$,
  'PT409', 'dispute 50000000-0000-0000-0000-000000000001 is resolved: a closed dispute never changes',
  'admin cannot change the share of a settled split'
);
select throws_ok(
  $$update public.disputes set outcome = 'release', payee_share_minor = null
    where id = '50000000-0000-0000-0000-000000000001'$$,
  'PT409', 'dispute 50000000-0000-0000-0000-000000000001 is resolved: a closed dispute never changes',
  'nor its outcome'
);
select throws_ok(
  $$update public.disputes set status = 'open', outcome = null, payee_share_minor = null
    where id = '50000000-0000-0000-0000-000000000001'$$,
  'PT409', 'dispute 50000000-0000-0000-0000-000000000001 is resolved: a closed dispute never changes',
  'nor reopen it'
);
select throws_ok(
  $$update public.disputes set resolution = 'Rewritten after the fact'
    where id = '50000000-0000-0000-0000-000000000001'$$,
  'PT409', 'dispute 50000000-0000-0000-0000-000000000001 is resolved: a closed dispute never changes',
  'nor rewrite its resolution'
);
select throws_ok(
  $$update public.disputes set status = 'open'
    where id = '50000000-0000-0000-0000-000000000005'$$,
  'PT409', 'dispute 50000000-0000-0000-0000-000000000005 is withdrawn: a closed dispute never changes',
  'nor reopen a withdrawn dispute'
);
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000001', 'release', 'Changed my mind about it', 'again-1'))$$,
  'PT409', 'dispute 50000000-0000-0000-0000-000000000001 is resolved: a closed dispute never changes',
  'nor resolve it again through the RPC'
);
select is(
  tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000001', 'split', 'Half the cabinets were fitted', 'split-1',
    12000
  )) ->> 'payee_share_minor',
  '12000',
  'while the first call, retried with its key, replays its answer'
);

-- as escrow_service: the same
reset role;
select tests.authenticate_as_service('escrow_service');
select throws_ok(
  $$update public.disputes set payee_share_minor = 1000
    where id = '50000000-0000-0000-0000-000000000003'$$,
  'PT409', 'dispute 50000000-0000-0000-0000-000000000003 is resolved: a closed dispute never changes',
  'escrow_service cannot change a settled dispute'
);

-- as the owner of the tables: the same, and no delete
reset role;
select throws_ok(
  $$update public.disputes set payee_share_minor = 1000
    where id = '50000000-0000-0000-0000-000000000001'$$,
  'PT409', 'dispute 50000000-0000-0000-0000-000000000001 is resolved: a closed dispute never changes',
  'the owner of the tables cannot change a settled dispute'
);
select throws_ok(
  $$delete from public.disputes where id = '50000000-0000-0000-0000-000000000001'$$,
  'PT409', 'dispute 50000000-0000-0000-0000-000000000001 is resolved: a closed dispute is never deleted',
  'nor delete it'
);
select throws_ok(
  $$delete from public.disputes where id = '50000000-0000-0000-0000-000000000005'$$,
  'PT409', 'dispute 50000000-0000-0000-0000-000000000005 is withdrawn: a closed dispute is never deleted',
  'nor a withdrawn one'
);
select results_eq(
  $$select status::text, outcome::text, payee_share_minor, resolution, resolved_by
    from public.disputes where id = '50000000-0000-0000-0000-000000000001'$$,
  $$values ('resolved', 'split', 12000::bigint, 'Half the cabinets were fitted',
    tests.get_supabase_uid('ada'))$$,
  'the settled dispute is as it was decided'
);

-- as the payer: a settled payment is not disputed again
select tests.authenticate_as('hana');
select throws_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000001', 'Second thoughts')$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000001 cannot go from split to disputed',
  'a new dispute cannot reopen a settled payment'
);

-- who comes first: a party, even an admin, is refused as a party before anything about the
-- dispute's state or the request's content is said; a user is refused the table outright,
-- for a dispute that exists as for one that does not
reset role;
update public.users set role = 'admin' where id = tests.get_supabase_uid('carl');
select tests.authenticate_as('carl', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$update public.disputes set payee_share_minor = 19999
    where id = '50000000-0000-0000-0000-000000000001'$$,
  'PT403', 'a party to milestone payment 30000000-0000-0000-0000-000000000001 cannot resolve its dispute',
  'the payee, though an admin, is refused as a party on a settled dispute'
);
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000004', 'release', '', 'party-1'))$$,
  'PT403', 'a party to milestone payment 30000000-0000-0000-0000-000000000004 cannot resolve its dispute',
  'and on an open one, before the missing resolution'
);
select throws_ok(
  $$update public.disputes set resolution = 'My side of the story'
    where id = '50000000-0000-0000-0000-000000000004'$$,
  'PT403', 'a party to milestone payment 30000000-0000-0000-0000-000000000004 cannot resolve its dispute',
  'nor writes the decision on it'
);
reset role;
update public.users set role = 'contractor' where id = tests.get_supabase_uid('carl');
select tests.authenticate_as('carl', aal => 'aal2');
select throws_ok(
  $$update public.disputes set payee_share_minor = 19999
    where id = '50000000-0000-0000-0000-000000000001'$$,
  '42501', 'permission denied for table disputes',
  'the payee cannot update his settled dispute'
);
select throws_ok(
  $$update public.disputes set payee_share_minor = 19999
    where id = '50000000-0000-0000-0000-0000000000ff'$$,
  '42501', 'permission denied for table disputes',
  'exactly as a dispute that does not exist'
);
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-000000000004', 'release', 'Pay me in full, please', 'user-1'))$$,
  '42501', 'permission denied for function resolve_dispute',
  'nor resolve his open dispute through the RPC'
);
select throws_ok(
  $$select tests.raise_if_refused(public.resolve_dispute(
    '50000000-0000-0000-0000-0000000000ff', 'release', 'Pay me in full, please', 'user-2'))$$,
  '42501', 'permission denied for function resolve_dispute',
  'exactly as a dispute that does not exist'
);

-- money is conserved, and the escrow holds the two payments still in dispute and the funded one
reset role;
select is(
  (select balance_minor from public.escrow_accounts where id = '40000000-0000-0000-0000-000000000001'),
  60000::bigint,
  'the escrow holds what was not settled'
);
select is(
  (select sum(credits_posted - debits_posted + credits_pending - debits_pending)::bigint
    from private.ledger_balances),
  0::bigint,
  'money is conserved over all accounts'
);

select * from finish();
rollback;
