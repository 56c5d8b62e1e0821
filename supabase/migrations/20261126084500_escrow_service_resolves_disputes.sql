-- escrow_service decides disputes as admin does: it may now resolve one through the RPC
-- (release, refund or split), and update the dispute's resolution columns itself (the
-- policy migration before this one). The same triggers hold: the transition rules, the
-- split's share, and no party settling its own dispute.

grant execute on function public.resolve_dispute(uuid, public.dispute_outcome, text, text, bigint)
to escrow_service;
grant execute on function private.resolve_dispute(
  uuid, public.dispute_outcome, text, text, bigint
) to escrow_service;
