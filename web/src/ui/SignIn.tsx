import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { Api, ApiError, USER_ID } from '../protocol';
import { tokenSubject, type Session } from '../session';

interface Props {
  /** Why the previous session ended, if it did not end by signing out. */
  error: string | null;
  onSignedIn(session: Session): void;
  api?: Api;
}

/** Dev mode: a name is enough (the server issues a token). Otherwise: paste a JWT. */
export function SignIn({ error, onSignedIn, api = new Api('') }: Props) {
  const [mode, setMode] = useState<'dev' | 'jwt'>('dev');
  const [name, setName] = useState('');
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(error);
  const firstField = useRef<HTMLInputElement & HTMLTextAreaElement>(null);
  const errorId = useId();

  useEffect(() => firstField.current?.focus(), [mode]);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setProblem(null);
    if (mode === 'dev') {
      const user = name.trim();
      if (!USER_ID.test(user)) {
        setProblem('A name is 1 to 64 letters, digits, dots, dashes or underscores.');
        return;
      }
      setBusy(true);
      try {
        onSignedIn({ user, token: await api.devToken(user), mode: 'dev' });
      } catch (err) {
        setBusy(false);
        if (err instanceof ApiError && err.status === 404) {
          setMode('jwt');
          setProblem('This server does not run in dev mode: sign in with a token.');
        } else setProblem(`Sign-in failed: ${(err as Error).message}`);
      }
      return;
    }
    const jwt = token.trim();
    const user = tokenSubject(jwt);
    if (!user) {
      setProblem('That does not look like a JWT (header.payload.signature with a "sub" claim).');
      return;
    }
    onSignedIn({ user, token: jwt, mode: 'jwt' });
  }

  return (
    <main className="signin">
      <h1>chat</h1>
      <form onSubmit={submit} aria-describedby={problem ? errorId : undefined} noValidate>
        {mode === 'dev' ? (
          <>
            <label htmlFor="signin-name">Your name</label>
            <input
              id="signin-name"
              ref={firstField}
              value={name}
              onChange={(e) => setName(e.target.value)}
              autoComplete="username"
              autoCapitalize="none"
              spellCheck={false}
              maxLength={64}
              required
            />
          </>
        ) : (
          <>
            <label htmlFor="signin-token">Token (JWT)</label>
            <textarea
              id="signin-token"
              ref={firstField}
              value={token}
              onChange={(e) => setToken(e.target.value)}
              rows={4}
              spellCheck={false}
              required
            />
          </>
        )}
        {problem && (
          <p id={errorId} className="form-error" role="alert">
            {problem}
          </p>
        )}
        <button type="submit" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        <button
          type="button"
          className="link"
          onClick={() => {
            setProblem(null);
            setMode(mode === 'dev' ? 'jwt' : 'dev');
          }}
        >
          {mode === 'dev' ? 'Sign in with a token instead' : 'Sign in with a name (dev mode)'}
        </button>
      </form>
    </main>
  );
}
