import { useState } from 'react';
import { saveSession, loadSession, type Session } from './session';
import { SignIn } from './ui/SignIn';
import { ChatApp } from './ui/ChatApp';

export function App() {
  const [session, setSession] = useState<Session | null>(loadSession);
  const [signInError, setSignInError] = useState<string | null>(null);

  if (!session) {
    return (
      <SignIn
        error={signInError}
        onSignedIn={(s) => {
          saveSession(s);
          setSignInError(null);
          setSession(s);
        }}
      />
    );
  }
  return (
    <ChatApp
      key={`${session.user}:${session.token}`}
      session={session}
      onSignOut={(error) => {
        saveSession(null);
        setSignInError(error ?? null);
        setSession(null);
      }}
    />
  );
}
