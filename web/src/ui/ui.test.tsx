// @vitest-environment jsdom
import { act, cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Api } from '../protocol';
import { FakeApi, FakeSocket, msg } from '../test/fakes';
import { ChatApp } from './ChatApp';
import { Composer } from './Composer';
import { MessageList } from './MessageList';
import { SignIn } from './SignIn';

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  localStorage.clear();
});

describe('Composer', () => {
  it('sends on Enter, adds a line on Shift+Enter, waits while offline', () => {
    const onSend = vi.fn(() => true);
    const onTyping = vi.fn();
    const { rerender } = render(<Composer label="Message #general" canSend onSend={onSend} onTyping={onTyping} />);
    const box = screen.getByLabelText('Message #general');
    fireEvent.change(box, { target: { value: 'hello' } });
    expect(onTyping).toHaveBeenCalledTimes(1);
    fireEvent.keyDown(box, { key: 'Enter', shiftKey: true });
    expect(onSend).not.toHaveBeenCalled();
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(onSend).toHaveBeenCalledWith('hello');
    expect((box as HTMLTextAreaElement).value).toBe('');

    rerender(<Composer label="Message #general" canSend={false} onSend={onSend} onTyping={onTyping} />);
    fireEvent.change(box, { target: { value: 'later' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(onSend).toHaveBeenCalledTimes(1);
    expect((box as HTMLTextAreaElement).value).toBe('later');
    expect(screen.getByRole('button', { name: 'Send' })).toHaveProperty('disabled', true);
  });
});

describe('MessageList', () => {
  it('lists messages under an accessible name, pages back, offers retry', () => {
    const onLoadOlder = vi.fn();
    const onRetry = vi.fn();
    render(
      <MessageList
        label="Messages in #general"
        messages={[msg('general', 4), msg('general', 5, { from: 'alice' })]}
        pending={[{ cid: 'c9', target: { room: 'general' }, text: 'mine', status: 'failed', error: 'too large' }]}
        me="alice"
        hasOlder
        loadingOlder={false}
        onLoadOlder={onLoadOlder}
        onRetry={onRetry}
        onDiscard={() => {}}
      />,
    );
    const list = screen.getByRole('list', { name: 'Messages in #general' });
    const items = within(list).getAllByRole('listitem');
    expect(items.map((li) => li.querySelector('.msg-text')!.textContent)).toEqual(['general 4', 'general 5', 'mine']);
    expect(within(items[1]).getByText('you')).toBeTruthy();
    fireEvent.click(screen.getByRole('button', { name: 'Load older messages' }));
    expect(onLoadOlder).toHaveBeenCalled();
    fireEvent.click(within(items[2]).getByRole('button', { name: 'Retry' }));
    expect(onRetry).toHaveBeenCalledWith('c9');
  });
});

describe('SignIn', () => {
  it('signs in by name in dev mode', async () => {
    const onSignedIn = vi.fn();
    const api = new Api('', async () => Response.json({ token: 'dev-token' }));
    render(<SignIn error={null} onSignedIn={onSignedIn} api={api} />);
    expect(document.activeElement).toBe(screen.getByLabelText('Your name'));
    fireEvent.change(screen.getByLabelText('Your name'), { target: { value: 'alice' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    await waitFor(() => expect(onSignedIn).toHaveBeenCalledWith({ user: 'alice', token: 'dev-token', mode: 'dev' }));
  });

  it('asks for a token when the server has no dev mode, and reads its subject', async () => {
    const onSignedIn = vi.fn();
    const api = new Api('', async () =>
      Response.json({ error: { code: 'not_found', message: 'dev tokens need CHAT_DEV_MODE=true' } }, { status: 404 }),
    );
    render(<SignIn error={null} onSignedIn={onSignedIn} api={api} />);
    fireEvent.change(screen.getByLabelText('Your name'), { target: { value: 'alice' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect((await screen.findByRole('alert')).textContent).toMatch(/sign in with a token/);
    const payload = btoa(JSON.stringify({ sub: 'carol', exp: 2e9 })).replace(/=+$/, '');
    fireEvent.change(screen.getByLabelText('Token (JWT)'), { target: { value: `h.${payload}.s` } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(onSignedIn).toHaveBeenCalledWith({ user: 'carol', token: `h.${payload}.s`, mode: 'jwt' });
  });

  it('refuses a name the server would refuse', () => {
    render(<SignIn error={null} onSignedIn={() => {}} api={new Api('', async () => Response.json({}))} />);
    fireEvent.change(screen.getByLabelText('Your name'), { target: { value: 'no spaces' } });
    fireEvent.click(screen.getByRole('button', { name: 'Sign in' }));
    expect(screen.getByRole('alert').textContent).toMatch(/letters, digits/);
  });
});

describe('ChatApp', () => {
  let sockets: FakeSocket[];
  let api: FakeApi;

  beforeEach(() => {
    sockets = [];
    api = new FakeApi();
    api.presence.set('general', ['alice']);
    vi.stubGlobal(
      'WebSocket',
      class extends FakeSocket {
        constructor(url: string, protocols: string[]) {
          super(url, protocols);
          sockets.push(this);
        }
      },
    );
    vi.stubGlobal('fetch', api.fetch);
  });

  const serve = (s: FakeSocket, joined: object = {}) =>
    act(async () => {
      s.open();
      s.receive({ type: 'connected', user: 'alice', conn: 'c1', channel: '@alice', epoch: 'p1', seq: 0 });
      s.receive({ type: 'joined', room: 'general', epoch: 'e1', seq: 0, missed: 0, ...joined });
    });

  it('shows the conversation live: connection, presence, typing, messages, announcements', async () => {
    render(<ChatApp session={{ user: 'alice', token: 'tok', mode: 'jwt' }} onSignOut={() => {}} />);
    expect(screen.getByRole('status').textContent).toBe('Connecting…');
    const s = sockets[0];
    await serve(s);
    expect(screen.getByRole('status').textContent).toBe('Connected');
    await act(async () => s.receive({ type: 'presence', room: 'general', user: 'bob', event: 'join' }));
    const people = screen.getByRole('complementary', { name: /Online/ });
    await waitFor(() => expect(within(people).getAllByRole('listitem').map((li) => li.textContent)).toEqual(['alice (you)', 'bob']));

    await act(async () => s.receive({ type: 'typing', room: 'general', user: 'bob' }));
    expect(screen.getByText('bob is typing…')).toBeTruthy();
    await act(async () => s.receive({ type: 'message', ...msg('general', 1, { text: 'hi alice' }) }));
    const list = screen.getByRole('list', { name: 'Messages in #general' });
    expect(within(list).getByText('hi alice')).toBeTruthy();
    expect(screen.queryByText('bob is typing…')).toBeNull();
    // Screen readers hear the new message.
    expect(screen.getByText('bob in #general: hi alice').getAttribute('aria-live')).toBe('polite');

    const box = screen.getByLabelText('Message #general');
    fireEvent.change(box, { target: { value: 'hello bob' } });
    fireEvent.keyDown(box, { key: 'Enter' });
    expect(s.sent).toContainEqual(expect.objectContaining({ type: 'send', room: 'general', text: 'hello bob' }));
    expect(s.sent).toContainEqual({ type: 'typing', room: 'general' });
  });

  it('says so when history could not be recovered after a reconnect', async () => {
    render(<ChatApp session={{ user: 'alice', token: 'tok', mode: 'jwt' }} onSignOut={() => {}} />);
    await serve(sockets[0]);
    await act(async () => sockets[0].receive({ type: 'message', ...msg('general', 1) }));
    await act(async () => sockets[0].drop(1006));
    expect(screen.getByRole('status').textContent).toMatch(/Disconnected: retrying in \d s/);
    await waitFor(() => expect(sockets).toHaveLength(2), { timeout: 3000 });
    api.set('general', 'e1', [50, 51]);
    await serve(sockets[1], { seq: 51, recovered: false });
    await waitFor(() => expect(screen.getByRole('alert').textContent).toMatch(/could not be recovered/));
    const list = screen.getByRole('list', { name: 'Messages in #general' });
    await waitFor(() => expect(within(list).getAllByRole('listitem').map((li) => li.dataset.seq)).toEqual(['50', '51']));
  });

  it('signs out when the server refuses the token', async () => {
    const onSignOut = vi.fn();
    render(<ChatApp session={{ user: 'alice', token: 'bad', mode: 'jwt' }} onSignOut={onSignOut} />);
    await act(async () => {
      sockets[0].open();
      sockets[0].receive({ type: 'error', code: 'unauthorized', message: 'token expired' });
      sockets[0].drop(1008);
    });
    expect(onSignOut).toHaveBeenCalledWith(expect.stringMatching(/token expired/));
  });
});
