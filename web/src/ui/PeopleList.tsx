interface Props {
  users: readonly string[];
  me: string;
  onMessage(user: string): void;
}

/** Who is online in the room; anyone but yourself can be messaged directly. */
export function PeopleList({ users, me, onMessage }: Props) {
  return (
    <ul className="people-list" aria-label="Online in this room">
      {users.map((u) => (
        <li key={u}>
          <span className="presence-dot" aria-hidden="true" />
          {u === me ? (
            <span>
              {u} <span className="muted">(you)</span>
            </span>
          ) : (
            <button
              type="button"
              className="link"
              onClick={() => onMessage(u)}
              aria-label={`${u}: send a direct message`}
            >
              {u}
            </button>
          )}
        </li>
      ))}
    </ul>
  );
}
