-- The life of a milestone payment, held by private.check_milestone_payment_transition and
-- the update policies of public.milestone_payments. Every legal transition succeeds for its
-- legal actor, and every other move is refused:
--
--   pending  -> funded     payment_service, with the processor's PaymentIntent id
--   pending  -> canceled   the payer
--   funded   -> released   the payer, when no dispute is open (aal2 from the MFA threshold on)
--   funded   -> disputed   the payer, or the payee by opening a dispute
--   disputed -> released   admin or escrow_service
--   disputed -> refunded   admin or escrow_service
begin;
select plan(64);

-- fixture, as the owner of the tables (postgres, which bypasses RLS)
-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
select tests.create_supabase_user('ada');
select tests.create_supabase_user('audrey');

-- hana's kitchen, built by carl: one milestone, and one payment (payer hana, payee carl),
-- per scenario. Milestone and payment NN share their last two digits.
insert into public.projects (id, owner_id, contractor_id, title)
values (
  '10000000-0000-0000-0000-000000000001', tests.get_supabase_uid('hana'),
  tests.get_supabase_uid('carl'), 'Kitchen remodel'
);
-- 50000 minor units is below the USD MFA threshold (100000); milestone 16 is above it
insert into public.project_milestones (id, project_id, position, title, amount_minor, currency)
select
  format('20000000-0000-0000-0000-0000000000%s', to_char(n, 'FM00'))::uuid,
  '10000000-0000-0000-0000-000000000001', n, format('Step %s', n),
  case when n = 16 then 250000 else 50000 end, 'USD'
from generate_series(1, 17) as n;
insert into public.milestone_payments (id, milestone_id, payer_id)
select
  format('30000000-0000-0000-0000-0000000000%s', to_char(n, 'FM00'))::uuid,
  format('20000000-0000-0000-0000-0000000000%s', to_char(n, 'FM00'))::uuid,
  tests.get_supabase_uid('hana')
from generate_series(1, 17) as n;

-- hana's escrow for the kitchen; no hold period, so that releases can follow funding here
insert into public.escrow_accounts (user_id, project_id, currency)
values (tests.get_supabase_uid('hana'), '10000000-0000-0000-0000-000000000001', 'USD');
update private.settings set value = '0' where key = 'escrow_hold_seconds';

-- Each payment starts from its state, its money moved along the legal path by the owner (the
-- tests below take each legal path, as its actor, once).
--   01, 02, 10          pending
--   03, 04, 05, 11, 15  funded (15 with an open dispute), 16 funded and large
--   06, 07, 08, 09, 12  disputed
--   13 released, 14 canceled, 17 refunded
select tests.set_milestone_payment_status(
  format('30000000-0000-0000-0000-0000000000%s', s.nn)::uuid,
  s.status::public.milestone_payment_status
)
from (
  values
  ('03', 'funded'), ('04', 'funded'), ('05', 'funded'), ('11', 'funded'), ('15', 'funded'),
  ('16', 'funded'), ('06', 'disputed'), ('07', 'disputed'), ('08', 'disputed'),
  ('09', 'disputed'), ('12', 'disputed'), ('13', 'released'), ('17', 'refunded'),
  ('14', 'canceled')
) as s (nn, status);
-- carl has submitted for review the milestones of the payments released here
select tests.submit_milestone(format('20000000-0000-0000-0000-0000000000%s', n)::uuid)
from unnest(array['03', '04', '05', '11', '15', '16']) as n;
-- an open dispute over each disputed payment that staff settle directly (06 to 09), its
-- resolution written on it first: a disputed payment is settled only by a written decision
insert into public.disputes (milestone_payment_id, opened_by, reason)
select format('30000000-0000-0000-0000-0000000000%s', n)::uuid, tests.get_supabase_uid('carl'),
  'Work unfinished'
from unnest(array['06', '07', '08', '09']) as n;
update public.disputes set resolution = 'Checked the photos of the work against the contract'
where milestone_payment_id in ('30000000-0000-0000-0000-000000000006',
  '30000000-0000-0000-0000-000000000007', '30000000-0000-0000-0000-000000000008',
  '30000000-0000-0000-0000-000000000009');
-- an open dispute over funded payment 15, kept from moving the payment to disputed
alter table public.disputes disable trigger dispute_milestone_payment;
insert into public.disputes (milestone_payment_id, opened_by, reason)
values ('30000000-0000-0000-0000-000000000015', tests.get_supabase_uid('carl'), 'Work unfinished');
alter table public.disputes enable trigger dispute_milestone_payment;

-- as payment_service: funds a pending payment, with its PaymentIntent id; nothing else
select tests.authenticate_as_service('payment_service');
select lives_ok(
  $$update public.milestone_payments
    set status = 'funded', processor_payment_intent_id = 'pi_1A2b3C'
    where id = '30000000-0000-0000-0000-000000000001'$$,
  'payment_service moves a pending payment to funded, with the PaymentIntent id'
);
select results_eq(
  $$select status::text, processor_payment_intent_id, funded_at is not null
    from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'$$,
  $$values ('funded', 'pi_1A2b3C', true)$$,
  'the funded payment holds its PaymentIntent id and the time it was funded'
);
select throws_ok(
  $$update public.milestone_payments set status = 'funded'
    where id = '30000000-0000-0000-0000-000000000010'$$,
  'PT422',
  'milestone payment 30000000-0000-0000-0000-000000000010 needs the processor''s PaymentIntent id to be funded',
  'payment_service cannot fund a payment without a PaymentIntent id'
);
select throws_ok(
  $$update public.milestone_payments set status = 'canceled'
    where id = '30000000-0000-0000-0000-000000000010'$$,
  'PT403',
  'only the payer may move milestone payment 30000000-0000-0000-0000-000000000010 from pending to canceled',
  'payment_service cannot cancel a pending payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000011'$$,
  'PT403',
  'only the payer may move milestone payment 30000000-0000-0000-0000-000000000011 from funded to released',
  'payment_service cannot release a funded payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000012'$$,
  'PT403',
  'only the admin or escrow_service may move milestone payment 30000000-0000-0000-0000-000000000012 from disputed to released',
  'payment_service cannot settle a disputed payment'
);
select throws_ok(
  $$update public.milestone_payments set processor_payment_intent_id = 'pi_Swapped9'
    where id = '30000000-0000-0000-0000-000000000011'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000011: its PaymentIntent id never changes once set',
  'payment_service cannot swap the PaymentIntent of a funded payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'funded'
    where id = '30000000-0000-0000-0000-000000000013'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000013 cannot go from released to funded',
  'payment_service cannot move a released payment back to funded'
);
select throws_ok(
  $$update public.milestone_payments
    set status = 'funded', processor_payment_intent_id = 'pi_Revive14'
    where id = '30000000-0000-0000-0000-000000000014'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000014 cannot go from canceled to funded',
  'payment_service cannot fund a canceled payment'
);

-- as the payer, hana, at aal1
reset role;
select tests.authenticate_as('hana');
select lives_ok(
  $$update public.milestone_payments set status = 'canceled'
    where id = '30000000-0000-0000-0000-000000000002'$$,
  'the payer cancels a pending payment'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000002'),
  'canceled',
  'the canceled payment is canceled'
);
select lives_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000003'$$,
  'the payer releases a funded payment with no open dispute'
);
select results_eq(
  $$select status::text, released_at is not null
    from public.milestone_payments where id = '30000000-0000-0000-0000-000000000003'$$,
  $$values ('released', true)$$,
  'the released payment holds the time it was released'
);
select throws_ok(
  $$update public.milestone_payments set status = 'disputed'
    where id = '30000000-0000-0000-0000-000000000004'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000004 is disputed by opening a dispute over it',
  'a payment cannot be put in dispute without a dispute to say why'
);
select lives_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000004', 'Doors do not close')$$,
  'the payer puts a funded payment in dispute by opening a dispute'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000004'),
  'disputed',
  'the payment the payer disputed is disputed'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000010'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000010 cannot go from pending to released',
  'the payer cannot release a pending payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'funded'
    where id = '30000000-0000-0000-0000-000000000010'$$,
  'PT403',
  'only the payment_service may move milestone payment 30000000-0000-0000-0000-000000000010 from pending to funded',
  'the payer cannot mark her payment funded'
);
select throws_ok(
  $$update public.milestone_payments set status = 'refunded'
    where id = '30000000-0000-0000-0000-000000000011'$$,
  'PT403',
  'only the payment_service may move milestone payment 30000000-0000-0000-0000-000000000011 from funded to refunded',
  'the payer cannot refund a funded payment to herself (only the processor''s refund does)'
);
select throws_ok(
  $$update public.milestone_payments set status = 'canceled'
    where id = '30000000-0000-0000-0000-000000000011'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000011 cannot go from funded to canceled',
  'the payer cannot cancel a funded payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'pending'
    where id = '30000000-0000-0000-0000-000000000011'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000011 cannot go from funded to pending',
  'the payer cannot move a funded payment back to pending'
);
with changed as (
  update public.milestone_payments set status = 'released'
  where id = '30000000-0000-0000-0000-000000000012'
  returning 1
)
select is(count(*)::int, 0, 'the payer cannot release a disputed payment') from changed;
with changed as (
  update public.milestone_payments set status = 'refunded'
  where id = '30000000-0000-0000-0000-000000000013'
  returning 1
)
select is(count(*)::int, 0, 'the payer cannot move a released payment anywhere') from changed;
with changed as (
  update public.milestone_payments set status = 'pending'
  where id = '30000000-0000-0000-0000-000000000014'
  returning 1
)
select is(count(*)::int, 0, 'the payer cannot revive a canceled payment') from changed;
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000015'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000015 has an open dispute and cannot be released',
  'the payer cannot release a funded payment while a dispute over it is open'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000016'$$,
  'PT403',
  'releasing milestone payment 30000000-0000-0000-0000-000000000016 needs a recent MFA step-up',
  'at aal1 the payer cannot release a payment at or above the MFA threshold: no step-up'
);
select throws_ok(
  $$update public.milestone_payments set released_at = now()
    where id = '30000000-0000-0000-0000-000000000011'$$,
  '42501', 'permission denied for table milestone_payments',
  'the payer cannot stamp a payment released (released_at is not updatable)'
);

-- as the payer, hana, at aal2: with a stale step-up, then a fresh one
reset role;
select tests.authenticate_as(
  'hana', aal => 'aal2',
  amr => jsonb_build_array(
    jsonb_build_object('method', 'totp', 'timestamp', extract(epoch from now())::bigint - 3600)
  )
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000016'$$,
  'PT403',
  'releasing milestone payment 30000000-0000-0000-0000-000000000016 needs a recent MFA step-up',
  'at aal2, a step-up an hour old is not recent enough for a large release'
);
reset role;
select tests.authenticate_as('hana', aal => 'aal2');
select lives_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000016'$$,
  'at aal2 the payer releases a payment at or above the MFA threshold'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000016'),
  'released',
  'the large payment is released'
);

-- as the payee, carl
reset role;
select tests.authenticate_as('carl');
select lives_ok(
  $$insert into public.disputes (milestone_payment_id, reason)
    values ('30000000-0000-0000-0000-000000000005', 'The homeowner will not release the payment')$$,
  'the payee opens a dispute over a funded payment'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000005'),
  'disputed',
  'opening the dispute put the payment in dispute'
);
with changed as (
  update public.milestone_payments set status = 'released'
  where id = '30000000-0000-0000-0000-000000000011'
  returning 1
)
select is(count(*)::int, 0, 'the payee cannot release a funded payment to himself') from changed;
with changed as (
  update public.milestone_payments set status = 'disputed'
  where id = '30000000-0000-0000-0000-000000000011'
  returning 1
)
select is(count(*)::int, 0, 'the payee disputes only by opening a dispute, not by updating the payment')
from changed;
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000012'$$,
  'PT403',
  'only the admin or escrow_service may move milestone payment 30000000-0000-0000-0000-000000000012 from disputed to released',
  'the payee cannot release a disputed payment to himself'
);
select throws_ok(
  $$update public.milestone_payments set status = 'refunded'
    where id = '30000000-0000-0000-0000-000000000012'$$,
  'PT403',
  'only the admin or escrow_service or payment_service may move milestone payment 30000000-0000-0000-0000-000000000012 from disputed to refunded',
  'the payee cannot settle a dispute by refunding'
);
select throws_ok(
  $$update public.milestone_payments set status = 'funded'
    where id = '30000000-0000-0000-0000-000000000012'$$,
  'PT403',
  'only the payment_service may move milestone payment 30000000-0000-0000-0000-000000000012 from disputed to funded',
  'the payee cannot take a payment out of dispute (only a chargeback decided for us does)'
);
with changed as (
  update public.milestone_payments set status = 'canceled'
  where id = '30000000-0000-0000-0000-000000000010'
  returning 1
)
select is(count(*)::int, 0, 'the payee cannot cancel a pending payment') from changed;

-- as an unrelated user, sam, at aal1 and at aal2
reset role;
select tests.authenticate_as('sam');
with changed as (
  update public.milestone_payments set status = 'released'
  where id = '30000000-0000-0000-0000-000000000011'
  returning 1
)
select is(count(*)::int, 0, 'an unrelated user cannot release hana''s payment') from changed;
with changed as (
  update public.milestone_payments set status = 'canceled'
  where id = '30000000-0000-0000-0000-000000000010'
  returning 1
)
select is(count(*)::int, 0, 'an unrelated user cannot cancel hana''s payment') from changed;
reset role;
select tests.authenticate_as('sam', aal => 'aal2');
with changed as (
  update public.milestone_payments set status = 'released'
  where id = '30000000-0000-0000-0000-000000000012'
  returning 1
)
select is(count(*)::int, 0, 'an unrelated user at aal2 cannot settle a disputed payment') from changed;

-- as admin (a staff user whose JWT role is admin): settles disputed payments only
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select lives_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000006'$$,
  'admin releases a disputed payment'
);
select results_eq(
  $$select status::text, released_at is not null
    from public.milestone_payments where id = '30000000-0000-0000-0000-000000000006'$$,
  $$values ('released', true)$$,
  'the payment admin released holds the time it was released'
);
select lives_ok(
  $$update public.milestone_payments set status = 'refunded'
    where id = '30000000-0000-0000-0000-000000000007'$$,
  'admin refunds a disputed payment'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000007'),
  'refunded',
  'the payment admin refunded is refunded'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000011'$$,
  'PT403',
  'only the payer may move milestone payment 30000000-0000-0000-0000-000000000011 from funded to released',
  'admin cannot release a funded payment that is not in dispute'
);
select throws_ok(
  $$update public.milestone_payments set status = 'funded'
    where id = '30000000-0000-0000-0000-000000000010'$$,
  'PT403',
  'only the payment_service may move milestone payment 30000000-0000-0000-0000-000000000010 from pending to funded',
  'admin cannot mark a payment funded'
);
select throws_ok(
  $$update public.milestone_payments set status = 'refunded'
    where id = '30000000-0000-0000-0000-000000000013'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000013 cannot go from released to refunded',
  'admin cannot refund a released payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000017'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000017 cannot go from refunded to released',
  'admin cannot release a refunded payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000014'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000014 cannot go from canceled to released',
  'admin cannot release a canceled payment'
);

-- as escrow_service: settles disputed payments only
reset role;
select tests.authenticate_as_service('escrow_service');
select lives_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000008'$$,
  'escrow_service releases a disputed payment'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000008'),
  'released',
  'the payment escrow_service released is released'
);
select lives_ok(
  $$update public.milestone_payments set status = 'refunded'
    where id = '30000000-0000-0000-0000-000000000009'$$,
  'escrow_service refunds a disputed payment'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000009'),
  'refunded',
  'the payment escrow_service refunded is refunded'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000011'$$,
  'PT403',
  'only the payer may move milestone payment 30000000-0000-0000-0000-000000000011 from funded to released',
  'escrow_service cannot release a funded payment that is not in dispute'
);
select throws_ok(
  $$update public.milestone_payments set status = 'canceled'
    where id = '30000000-0000-0000-0000-000000000010'$$,
  'PT403',
  'only the payer may move milestone payment 30000000-0000-0000-0000-000000000010 from pending to canceled',
  'escrow_service cannot cancel a pending payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'disputed'
    where id = '30000000-0000-0000-0000-000000000013'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000013 cannot go from released to disputed',
  'escrow_service cannot put a released payment back in dispute'
);
select throws_ok(
  $$update public.milestone_payments set status = 'disputed'
    where id = '30000000-0000-0000-0000-000000000017'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000017 cannot go from refunded to disputed',
  'escrow_service cannot put a refunded payment back in dispute'
);

-- as an anonymous request, as auditor and as service_role: no status to write at all
reset role;
select tests.clear_authentication();
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000011'$$,
  '42501', 'permission denied for table milestone_payments',
  'anon cannot move a payment'
);
reset role;
select tests.authenticate_as('audrey', role_name => 'auditor');
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000012'$$,
  '42501', 'permission denied for table milestone_payments',
  'auditor cannot move a payment'
);
reset role;
select tests.authenticate_as_service('service_role');
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000012'$$,
  '42501', 'permission denied for table milestone_payments',
  'service_role cannot move a payment'
);

-- as the owner of the tables (grants and RLS do not apply): the trigger still holds
reset role;
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000010'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000010 cannot go from pending to released',
  'not even the table owner releases a pending payment'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000011'$$,
  'PT403',
  'only the payer may move milestone payment 30000000-0000-0000-0000-000000000011 from funded to released',
  'not even the table owner releases a funded payment in the payer''s place'
);
select results_eq(
  $$select right(id::text, 2), status::text from public.milestone_payments
    where right(id::text, 2) in ('10', '11', '12', '13', '14', '15', '17')
    order by id$$,
  $$values ('10', 'pending'), ('11', 'funded'), ('12', 'disputed'), ('13', 'released'),
    ('14', 'canceled'), ('15', 'funded'), ('17', 'refunded')$$,
  'every payment an illegal move was tried on is still in its state'
);

select * from finish();
rollback;
