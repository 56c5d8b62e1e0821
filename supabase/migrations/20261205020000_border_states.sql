-- The states the border with Stripe needs, added on their own: a new enum value cannot be used
-- in the transaction that adds it, and every later migration uses them.
-- - milestone_payment_status 'failed': the processor declined or canceled the payer's charge;
--   nothing moved, and the payer may try again with a new attempt (or cancel).
-- - webhook_event_status 'refused': the database's rules refused what the event asked (an
--   out-of-order or illegal move, a wrong amount or currency, an unknown object). The event is
--   recorded and acknowledged, its effects rolled back, and `payguard reconcile` reports it.

alter type public.milestone_payment_status add value 'failed' after 'pending';
alter type public.webhook_event_status add value 'refused' after 'failed';
