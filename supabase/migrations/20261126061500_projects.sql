-- Projects and their milestones: what a homeowner pays a contractor for.

create type public.project_status as enum ('draft', 'open', 'in_progress', 'completed', 'canceled');

create table public.projects (
  id uuid primary key default gen_random_uuid(),
  owner_id uuid not null default auth.uid() references public.users (id),
  contractor_id uuid references public.users (id),
  title text not null check (char_length(title) between 1 and 200),
  description text check (char_length(description) <= 5000),
  status public.project_status not null default 'draft',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (contractor_id is distinct from owner_id)
);

comment on table public.projects is
'A homeowner''s project (owner_id) and the contractor hired for it (contractor_id).';

create index projects_owner_id_idx on public.projects (owner_id);
create index projects_contractor_id_idx on public.projects (contractor_id);

create trigger keep_row_timestamps
before insert or update on public.projects
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.projects
for each row execute function private.refuse_card_data();

create type public.milestone_status as enum ('planned', 'in_progress', 'completed', 'approved');

create table public.project_milestones (
  id uuid primary key default gen_random_uuid(),
  project_id uuid not null references public.projects (id) on delete cascade,
  position int not null check (position > 0),
  title text not null check (char_length(title) between 1 and 200),
  amount_minor bigint not null check (amount_minor > 0),
  currency char(3) not null check (currency ~ '^[A-Z]{3}$'),
  status public.milestone_status not null default 'planned',
  due_on date,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (project_id, position)
);

comment on table public.project_milestones is
'A milestone of a project and the amount (minor units of currency) due when it is done.';

create trigger keep_row_timestamps
before insert or update on public.project_milestones
for each row execute function private.keep_row_timestamps();

create trigger refuse_card_data
before insert or update on public.project_milestones
for each row execute function private.refuse_card_data();

/** True when the requesting user owns the project. */
create function private.owns_project(project uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from public.projects as p
    where p.id = project and p.owner_id = (select auth.uid())
  )
$$;

/** True when the requesting user owns the project or is its contractor. */
create function private.is_project_party(project uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from public.projects as p
    where p.id = project and (select auth.uid()) in (p.owner_id, p.contractor_id)
  )
$$;

revoke all on function private.owns_project(uuid) from public;
revoke all on function private.is_project_party(uuid) from public;
grant execute on function private.owns_project(uuid) to authenticated;
grant execute on function private.is_project_party(uuid) to authenticated;
