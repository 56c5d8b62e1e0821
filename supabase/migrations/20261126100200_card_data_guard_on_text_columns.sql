-- The card-data guard on escrow accounts and milestone payments fires on update only when a
-- text column changes: the ledger updates an escrow's balance on every posting, and a
-- payment's status changes at each step, and neither can bring card data.
-- (tests/sql/schema/invariants.test.sql checks that each list names every text column.)

drop trigger refuse_card_data on public.escrow_accounts;
create trigger refuse_card_data
before insert or update of currency on public.escrow_accounts
for each row execute function private.refuse_card_data();

drop trigger refuse_card_data on public.milestone_payments;
create trigger refuse_card_data
before insert or update of currency, processor_payment_intent_id on public.milestone_payments
for each row execute function private.refuse_card_data();
