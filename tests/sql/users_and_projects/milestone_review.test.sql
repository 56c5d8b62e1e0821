-- The review of a milestone, against fake completion claims: the contractor submits it
-- (submit_milestone), the owner rejects it with a written reason (reject_milestone) or
-- approves it by releasing its payment, and a release before submission is refused (PT409)
-- by the transition trigger, whether asked through the RPC or by a PATCH of the table. Once
-- the review window ends with no open dispute, the payee may release the payment
-- (release_lapsed_milestone_payment), and private.release_lapsed_reviews tells both parties so
-- and, with milestone_review_auto_release on, releases it. Each step notifies its party.
begin;
select plan(63);

-- the backend and staff roles may call pgTAP's assertions (rolled back with the test)
select tests.let_roles_call_pgtap();

-- fixtures, as postgres: hana's kitchen, built by carl, five milestones of 50000 USD (below
-- the MFA threshold), each with its payment funded into escrow; no escrow hold
select tests.create_supabase_user('hana');
select tests.create_supabase_user('carl', metadata => '{"role": "contractor"}');
select tests.create_supabase_user('sam');
select tests.create_supabase_user('ada');
update public.users set role = 'admin' where id = tests.get_supabase_uid('ada');
update private.settings set value = '0' where key = 'escrow_hold_seconds';
select tests.create_project_with_milestones(
  'hana',
  'carl',
  amounts => array_fill(50000::bigint, array[5]),
  titles => array['Demolition', 'Cabinets', 'Counters', 'Lights', 'Paint'],
  project_id => '10000000-0000-0000-0000-000000000001'
);
select tests.set_milestone_payment_status(
  format('30000000-0000-0000-0000-00000000000%s', n)::uuid, 'funded'
)
from generate_series(1, 5) as n;

-- the settings, with their defaults
select results_eq(
  $$select key, value from private.settings
    where key in ('milestone_review_window_seconds', 'milestone_review_auto_release')
    order by key$$,
  $$values ('milestone_review_auto_release', 'false'::jsonb),
    ('milestone_review_window_seconds', '604800'::jsonb)$$,
  'the review window is 7 days, and a lapsed review is not released automatically by default'
);

-- as hana, the owner and payer: nothing is released before its milestone is submitted
select tests.authenticate_as('hana');
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000001'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000001 cannot be released: its milestone 20000000-0000-0000-0000-000000000001 is not submitted for review',
  'a PATCH of the payment cannot release it before its milestone is submitted'
);
select throws_ok(
  $$select tests.raise_if_refused(public.release_milestone_payment(
    '30000000-0000-0000-0000-000000000001', 'release-early'))$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000001 cannot be released: its milestone 20000000-0000-0000-0000-000000000001 is not submitted for review',
  'release_milestone_payment refuses it too'
);
select results_eq(
  $$select mp.status::text, mp.released_at is null, m.status::text
    from public.milestone_payments as mp join public.project_milestones as m on m.id = mp.milestone_id
    where mp.id = '30000000-0000-0000-0000-000000000001'$$,
  $$values ('funded', true, 'planned')$$,
  'the refused release changed nothing'
);
select throws_ok(
  $$select tests.raise_if_refused(public.submit_milestone(
    '20000000-0000-0000-0000-000000000001', 'hana-submit'))$$,
  'PT404',
  'no milestone 20000000-0000-0000-0000-000000000001 that you may submit',
  'the payer cannot submit a milestone through the RPC'
);
select throws_ok(
  $$update public.project_milestones set status = 'completed'
    where id = '20000000-0000-0000-0000-000000000001'$$,
  'PT403',
  'only the contractor of project 10000000-0000-0000-0000-000000000001 may move milestone 20000000-0000-0000-0000-000000000001 from planned to completed',
  'nor by a PATCH of the milestone'
);
select throws_ok(
  $$update public.project_milestones set status = 'approved'
    where id = '20000000-0000-0000-0000-000000000001'$$,
  'PT409',
  'milestone 20000000-0000-0000-0000-000000000001 is approved only by releasing its payment',
  'the owner cannot approve a milestone but by releasing its payment'
);
select throws_ok(
  $$select tests.raise_if_refused(public.reject_milestone(
    '20000000-0000-0000-0000-000000000001', 'The cabinets are not installed yet', 'reject-planned'))$$,
  'PT409',
  'milestone 20000000-0000-0000-0000-000000000001: its rejection reason is written only by rejecting its submission',
  'a milestone not submitted cannot be rejected'
);
select throws_ok(
  $$update public.project_milestones set rejection_reason = 'Not good enough at all'
    where id = '20000000-0000-0000-0000-000000000001'$$,
  'PT409',
  'milestone 20000000-0000-0000-0000-000000000001: its rejection reason is written only by rejecting its submission',
  'the rejection reason is written only by a rejection'
);
select lives_ok(
  $$update public.project_milestones set status = 'in_progress'
    where id = '20000000-0000-0000-0000-000000000005'$$,
  'the owner may mark a planned milestone in progress'
);

-- as carl, the contractor and payee
reset role;
select tests.authenticate_as('carl');
with changed as (
  update public.project_milestones set status = 'completed'
  where id = '20000000-0000-0000-0000-000000000001'
  returning 1
)
select is(count(*)::int, 0, 'the contractor updates no milestone by a PATCH') from changed;
select is(
  tests.raise_if_refused(public.submit_milestone(
    '20000000-0000-0000-0000-000000000001', 'carl-submit-1')) ->> 'status',
  'completed',
  'the contractor submits the milestone for review'
);
select is(
  public.submit_milestone('20000000-0000-0000-0000-000000000001', 'carl-submit-1') ->> 'status',
  'completed',
  'the same key replays the answer'
);
select results_eq(
  $$select status::text, submitted_at = now(), review_ends_at = now() + interval '7 days',
      rejection_reason is null
    from public.project_milestones where id = '20000000-0000-0000-0000-000000000001'$$,
  $$values ('completed', true, true, true)$$,
  'the submission opens a review window of 7 days'
);
select throws_ok(
  $$select tests.raise_if_refused(public.release_milestone_payment(
    '30000000-0000-0000-0000-000000000001', 'carl-release'))$$,
  'PT404',
  'no milestone payment 30000000-0000-0000-0000-000000000001 that you may release',
  'the contractor cannot release the payment as the payer does'
);
with changed as (
  update public.milestone_payments set status = 'released'
  where id = '30000000-0000-0000-0000-000000000001'
  returning 1
)
select is(count(*)::int, 0, 'nor by a PATCH of the payment') from changed;
select throws_ok(
  $$select tests.raise_if_refused(public.release_lapsed_milestone_payment(
    '30000000-0000-0000-0000-000000000001', 'carl-lapsed-1'))$$,
  'PT409',
  format(
    'milestone payment 30000000-0000-0000-0000-000000000001 is released by its payee only once the review of milestone 20000000-0000-0000-0000-000000000001 ends, at %s',
    now() + interval '7 days'
  ),
  'the payee cannot release it himself while the review goes on'
);
select is(
  (select status::text from public.milestone_payments where id = '30000000-0000-0000-0000-000000000001'),
  'funded',
  'and the payment is still funded'
);
select throws_ok(
  $$select tests.raise_if_refused(public.reject_milestone(
    '20000000-0000-0000-0000-000000000001', 'I changed my mind about it', 'carl-reject'))$$,
  'PT404',
  'no milestone 20000000-0000-0000-0000-000000000001 that you may reject',
  'the contractor cannot reject his own submission'
);
select throws_ok(
  $$select tests.raise_if_refused(public.submit_milestone(
    '20000000-0000-0000-0000-000000000009', 'carl-submit-unknown'))$$,
  'PT404',
  'no milestone 20000000-0000-0000-0000-000000000009 that you may submit',
  'a milestone that does not exist is not submitted'
);

-- as hana: the submission was told to her; she rejects it with a reason
reset role;
select tests.authenticate_as('hana');
select results_eq(
  $$select event, title, milestone_payment_id, amount_minor from public.notifications
    where event like 'milestone.%' order by created_at, event$$,
  $$values ('milestone.submitted', 'Milestone "Demolition" was submitted for your review.',
    '30000000-0000-0000-0000-000000000001'::uuid, 50000::bigint)$$,
  'the owner is told of the submission, with its payment'
);
select throws_ok(
  $$select tests.raise_if_refused(public.reject_milestone(
    '20000000-0000-0000-0000-000000000001', '   ', 'reject-blank'))$$,
  'PT422',
  'rejecting milestone 20000000-0000-0000-0000-000000000001 needs a written reason of 10 to 2000 characters',
  'a rejection needs a written reason'
);
select throws_ok(
  $$update public.project_milestones set status = 'in_progress'
    where id = '20000000-0000-0000-0000-000000000001'$$,
  'PT422',
  'rejecting milestone 20000000-0000-0000-0000-000000000001 needs a written reason of 10 to 2000 characters',
  'a PATCH that rejects needs one too'
);
select is(
  tests.raise_if_refused(public.reject_milestone(
    '20000000-0000-0000-0000-000000000001', 'The old tiles are still on the wall', 'reject-1'
  )) ->> 'status',
  'in_progress',
  'the owner rejects the submission, which goes back to the contractor'
);
select results_eq(
  $$select status::text, rejection_reason, rejected_at = now(), submitted_at is null,
      review_ends_at is null
    from public.project_milestones where id = '20000000-0000-0000-0000-000000000001'$$,
  $$values ('in_progress', 'The old tiles are still on the wall', true, true, true)$$,
  'the milestone keeps the reason, and its review window is closed'
);
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000001'$$,
  'PT409',
  'milestone payment 30000000-0000-0000-0000-000000000001 cannot be released: its milestone 20000000-0000-0000-0000-000000000001 is not submitted for review',
  'a rejected milestone''s payment cannot be released'
);

-- as carl: told of the rejection, he submits again
reset role;
select tests.authenticate_as('carl');
select results_eq(
  $$select event, title from public.notifications where event like 'milestone.%'$$,
  $$values ('milestone.rejected',
    'Milestone "Demolition" was sent back: The old tiles are still on the wall.')$$,
  'the contractor is told of the rejection, with its reason'
);
select is(
  tests.raise_if_refused(public.submit_milestone(
    '20000000-0000-0000-0000-000000000001', 'carl-submit-2')) ->> 'status',
  'completed',
  'the contractor submits it again'
);
select results_eq(
  $$select rejection_reason is null, rejected_at is null, review_ends_at = now() + interval '7 days'
    from public.project_milestones where id = '20000000-0000-0000-0000-000000000001'$$,
  $$values (true, true, true)$$,
  'which clears the rejection and opens a new review window'
);

-- as sam, a stranger: nothing
reset role;
select tests.authenticate_as('sam');
select throws_ok(
  $$select tests.raise_if_refused(public.submit_milestone(
    '20000000-0000-0000-0000-000000000002', 'sam-submit'))$$,
  'PT404',
  'no milestone 20000000-0000-0000-0000-000000000002 that you may submit',
  'a stranger cannot submit a milestone'
);
select throws_ok(
  $$select tests.raise_if_refused(public.reject_milestone(
    '20000000-0000-0000-0000-000000000001', 'This is not done at all', 'sam-reject'))$$,
  'PT404',
  'no milestone 20000000-0000-0000-0000-000000000001 that you may reject',
  'a stranger cannot reject a milestone'
);
select throws_ok(
  $$select tests.raise_if_refused(public.release_lapsed_milestone_payment(
    '30000000-0000-0000-0000-000000000001', 'sam-lapsed'))$$,
  'PT404',
  'no milestone payment 30000000-0000-0000-0000-000000000001 that you may release as its payee',
  'a stranger cannot release a payment as its payee'
);
with changed as (
  update public.project_milestones set status = 'completed'
  where id = '20000000-0000-0000-0000-000000000002'
  returning 1
)
select is(count(*)::int, 0, 'a stranger updates no milestone') from changed;
select throws_ok(
  $$select private.release_lapsed_reviews()$$,
  '42501',
  'permission denied for function release_lapsed_reviews',
  'no user runs the scheduler''s release of lapsed reviews'
);

-- as ada, an admin: staff neither submit nor reject
reset role;
select tests.authenticate_as('ada', aal => 'aal2', role_name => 'admin');
select throws_ok(
  $$select public.submit_milestone('20000000-0000-0000-0000-000000000002', 'ada-submit')$$,
  '42501',
  'permission denied for function submit_milestone',
  'an admin cannot submit a milestone'
);
select throws_ok(
  $$select public.reject_milestone('20000000-0000-0000-0000-000000000001', 'Staff say it is not done', 'ada-reject')$$,
  '42501',
  'permission denied for function reject_milestone',
  'an admin cannot reject one'
);
select throws_ok(
  $$update public.project_milestones set status = 'completed'
    where id = '20000000-0000-0000-0000-000000000002'$$,
  '42501',
  'permission denied for table project_milestones',
  'nor PATCH one'
);

-- as hana: she approves the resubmission by releasing its payment
reset role;
select tests.authenticate_as('hana');
select is(
  tests.raise_if_refused(public.release_milestone_payment(
    '30000000-0000-0000-0000-000000000001', 'release-1')) ->> 'status',
  'released',
  'the payer releases the payment of the submitted milestone'
);
select is(
  (select status::text from public.project_milestones where id = '20000000-0000-0000-0000-000000000001'),
  'approved',
  'which approves the milestone'
);
select results_eq(
  $$select event from public.notifications
    where milestone_payment_id = '30000000-0000-0000-0000-000000000001'
      and event = 'milestone_payment.released'$$,
  $$values ('milestone_payment.released')$$,
  'the payer is told of the release'
);
select throws_ok(
  $$update public.project_milestones set status = 'in_progress', rejection_reason = 'Found a leak after all'
    where id = '20000000-0000-0000-0000-000000000001'$$,
  'PT409',
  'milestone 20000000-0000-0000-0000-000000000001 cannot go from approved to in_progress',
  'an approved milestone is not rejected'
);

-- the review window lapses (a window of 0 seconds: it ends as it opens)
reset role;
update private.settings set value = '0' where key = 'milestone_review_window_seconds';
select tests.submit_milestone(format('20000000-0000-0000-0000-00000000000%s', n)::uuid)
from generate_series(2, 5) as n;
-- milestone 5's payment is disputed by hana
select tests.authenticate_as('hana');
select lives_ok(
  $$select tests.raise_if_refused(public.open_dispute(
    '30000000-0000-0000-0000-000000000005', 'The paint is peeling already', 'dispute-5'))$$,
  'the payer disputes the payment of milestone 5'
);
select throws_ok(
  $$select tests.raise_if_refused(public.reject_milestone(
    '20000000-0000-0000-0000-000000000002', 'The doors do not close properly', 'reject-late'))$$,
  'PT409',
  format(
    'the review of milestone 20000000-0000-0000-0000-000000000002 ended at %s: it can no longer be rejected',
    now()
  ),
  'once the review window has ended the owner cannot reject the submission'
);
select throws_ok(
  $$select tests.raise_if_refused(public.release_lapsed_milestone_payment(
    '30000000-0000-0000-0000-000000000002', 'hana-lapsed'))$$,
  'PT404',
  'no milestone payment 30000000-0000-0000-0000-000000000002 that you may release as its payee',
  'the payer does not release as the payee'
);

-- as carl: a lapsed review lets him release the payment himself, unless it is disputed
reset role;
select tests.authenticate_as('carl');
select is(
  tests.raise_if_refused(public.release_lapsed_milestone_payment(
    '30000000-0000-0000-0000-000000000002', 'carl-lapsed-2')) ->> 'status',
  'released',
  'the payee releases the payment once the review window has ended'
);
select results_eq(
  $$select mp.status::text, m.status::text
    from public.milestone_payments as mp join public.project_milestones as m on m.id = mp.milestone_id
    where mp.id = '30000000-0000-0000-0000-000000000002'$$,
  $$values ('released', 'approved')$$,
  'the payment is released and the milestone approved'
);
select throws_ok(
  $$select tests.raise_if_refused(public.release_lapsed_milestone_payment(
    '30000000-0000-0000-0000-000000000005', 'carl-lapsed-5'))$$,
  'PT404',
  'no milestone payment 30000000-0000-0000-0000-000000000005 that you may release as its payee',
  'a disputed payment is not released by its payee'
);
reset role;
select is(
  (select count(*)::int from private.rate_limit_counters
    where user_id = tests.get_supabase_uid('carl') and operation = 'milestone_payments.release'),
  1,
  'the payee''s release counts against the release limit'
);

-- the scheduler's run, as the owner of the schema: lapsed reviews of milestones 3 and 4 are
-- told to both parties, once, and released only with the setting on
select results_eq(
  $$select lapsed, released from private.release_lapsed_reviews()$$,
  $$values (2, 0)$$,
  'with automatic release off, the two lapsed reviews are found and nothing is released'
);
select results_eq(
  $$select n.user_id = tests.get_supabase_uid('hana'), n.milestone_payment_id, n.title
    from public.notifications as n where n.event = 'milestone.review_lapsed'
    order by 2, 1$$,
  $$values
    (false, '30000000-0000-0000-0000-000000000003'::uuid,
      'The review of milestone "Counters" has ended: you may release its payment.'),
    (true, '30000000-0000-0000-0000-000000000003'::uuid,
      'The review of milestone "Counters" has ended.'),
    (false, '30000000-0000-0000-0000-000000000004'::uuid,
      'The review of milestone "Lights" has ended: you may release its payment.'),
    (true, '30000000-0000-0000-0000-000000000004'::uuid,
      'The review of milestone "Lights" has ended.')$$,
  'both parties are told that the payee may release the payment'
);
select results_eq(
  $$select mp.status::text from public.milestone_payments as mp
    where mp.id in ('30000000-0000-0000-0000-000000000003', '30000000-0000-0000-0000-000000000004')$$,
  $$values ('funded'), ('funded')$$,
  'the payments stay funded'
);
select results_eq(
  $$select lapsed, released from private.release_lapsed_reviews()$$,
  $$values (2, 0)$$,
  'a second run finds them again'
);
select is(
  (select count(*)::int from public.notifications where event = 'milestone.review_lapsed'),
  4,
  'but tells no one twice'
);
update private.settings set value = 'true' where key = 'milestone_review_auto_release';
update private.settings set value = '3600' where key = 'escrow_hold_seconds';
select results_eq(
  $$select lapsed, released from private.release_lapsed_reviews()$$,
  $$values (2, 0)$$,
  'with automatic release on, nothing in its escrow hold is released'
);
update private.settings set value = '0' where key = 'escrow_hold_seconds';
update public.escrow_accounts set status = 'frozen'
where project_id = '10000000-0000-0000-0000-000000000001';
select results_eq(
  $$select lapsed, released from private.release_lapsed_reviews()$$,
  $$values (2, 0)$$,
  'nor out of a frozen escrow account (the transition trigger refuses it, and the run goes on)'
);
update public.escrow_accounts set status = 'open'
where project_id = '10000000-0000-0000-0000-000000000001';
select results_eq(
  $$select lapsed, released from private.release_lapsed_reviews()$$,
  $$values (2, 2)$$,
  'out of its hold and an open escrow account, each lapsed payment is released'
);
select results_eq(
  $$select mp.status::text, m.status::text
    from public.milestone_payments as mp join public.project_milestones as m on m.id = mp.milestone_id
    where mp.id in ('30000000-0000-0000-0000-000000000003', '30000000-0000-0000-0000-000000000004')
    order by mp.id$$,
  $$values ('released', 'approved'), ('released', 'approved')$$,
  'the payments are released and their milestones approved'
);
select results_eq(
  $$select mp.status::text, m.status::text
    from public.milestone_payments as mp join public.project_milestones as m on m.id = mp.milestone_id
    where mp.id = '30000000-0000-0000-0000-000000000005'$$,
  $$values ('disputed', 'completed')$$,
  'the disputed payment is left to its dispute'
);
select is(
  (select count(*)::int from public.notifications
    where event = 'milestone_payment.released'
      and milestone_payment_id in ('30000000-0000-0000-0000-000000000003', '30000000-0000-0000-0000-000000000004')),
  4,
  'both parties are told of each release'
);
select results_eq(
  $$select lapsed, released from private.release_lapsed_reviews()$$,
  $$values (0, 0)$$,
  'a later run finds nothing left'
);

-- outside the scheduler's run, the owner of the tables is no actor of a release
select throws_ok(
  $$update public.milestone_payments set status = 'released'
    where id = '30000000-0000-0000-0000-000000000005'$$,
  'PT403',
  'only the admin or escrow_service may move milestone payment 30000000-0000-0000-0000-000000000005 from disputed to released',
  'the owner of the tables moves no payment on its own'
);

-- the audit trail records each move of the review, with its new columns
select results_eq(
  $$select a.new_values ->> 'status', a.new_values ? 'submitted_at',
      a.new_values ? 'review_ends_at', a.new_values ? 'rejection_reason'
    from public.payment_audit_logs as a
    where a.entity_type = 'project_milestones'
      and a.entity_id = '20000000-0000-0000-0000-000000000001' and a.operation = 'UPDATE'
    order by a.seq$$,
  $$values ('completed', true, true, true), ('in_progress', true, true, true),
    ('completed', true, true, true), ('approved', true, true, true)$$,
  'every move of milestone 1 is in the audit trail'
);
select is(
  (
    select a.new_values ->> 'rejection_reason' from public.payment_audit_logs as a
    where a.entity_type = 'project_milestones'
      and a.entity_id = '20000000-0000-0000-0000-000000000001'
      and a.new_values ->> 'status' = 'in_progress'
  ),
  'The old tiles are still on the wall',
  'with the reason of its rejection'
);

select * from finish();
rollback;
